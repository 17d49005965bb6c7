//! Placeholder scripts: a fixed-capacity script embedded at build time so that the real
//! chainload script can later be written into the built binaries without a rebuild.
//!
//! The placeholder is a valid script of its kind (it says it has not been patched yet),
//! followed by newlines up to its capacity, so its bytes are known exactly and can be found
//! and replaced in place; the replacement is padded with newlines to the same length, which
//! every script language concerned (iPXE, GRUB) reads as blank lines.

use serde::{Deserialize, Serialize};

/// Which loader reads the script; decides its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptKind {
    Ipxe,
    Grub,
}

impl ScriptKind {
    /// File name the build sees for `{embed}` (iPXE names embedded images after it).
    pub fn file_name(self) -> &'static str {
        match self {
            ScriptKind::Ipxe => "bootforge.ipxe",
            ScriptKind::Grub => "bootforge.cfg",
        }
    }
}

/// A recipe's `placeholder:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placeholder {
    pub kind: ScriptKind,
    /// Bytes reserved for the script (at least 1024).
    pub capacity: usize,
    /// The template `embed` and `package` render into it, relative to the recipe.
    pub template: String,
    /// Outputs whose placeholder is compressed: how to remake them from a patched
    /// uncompressed form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repack: Vec<Repack>,
}

/// How to remake a compressed output after patching its uncompressed form, e.g. iPXE's
/// `bin/undionly.kpxe` = `util/zbin32 bin/undionly.kpxe.bin bin/undionly.kpxe.zinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repack {
    /// The output to remake.
    pub output: String,
    /// The output holding the placeholder uncompressed; it is patched first.
    pub patch: String,
    /// Command run in the recipe's toolchain, in a directory holding the recipe's outputs
    /// (the patched one replaced); its standard output becomes the new `output`.
    pub run: Vec<String>,
}

/// The text that marks a placeholder; unique enough not to occur by accident.
pub const MARKER: &str = "BOOTFORGE-PLACEHOLDER";

/// The smallest capacity accepted.
pub const MIN_CAPACITY: usize = 1024;

impl Placeholder {
    /// The placeholder's exact bytes.
    pub fn bytes(&self) -> Vec<u8> {
        placeholder_bytes(self.kind, self.capacity)
    }
}

/// The placeholder for `kind` with `capacity` bytes.
pub fn placeholder_bytes(kind: ScriptKind, capacity: usize) -> Vec<u8> {
    let shebang = match kind {
        ScriptKind::Ipxe => "#!ipxe\n",
        ScriptKind::Grub => "",
    };
    let mut text = format!(
        "{shebang}# {MARKER} capacity={capacity}\n\
         echo \"bootforge: this is the placeholder script; write the real one with bootforge embed\"\n"
    )
    .into_bytes();
    text.resize(capacity.max(text.len()), b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_has_exact_capacity_and_marker() {
        let p = placeholder_bytes(ScriptKind::Ipxe, 4096);
        assert_eq!(p.len(), 4096);
        assert!(p.starts_with(b"#!ipxe\n# BOOTFORGE-PLACEHOLDER capacity=4096\n"));
        let g = placeholder_bytes(ScriptKind::Grub, 1024);
        assert_eq!(g.len(), 1024);
        assert!(g.starts_with(b"# BOOTFORGE-PLACEHOLDER"));
    }
}
