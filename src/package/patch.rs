//! Writing a rendered script into the placeholder bytes of a built binary, in place.

use anyhow::{Result, bail};
use memchr::memmem;

use crate::recipe::placeholder::MARKER;

/// Replaces every occurrence of `placeholder` in `data` with `script` padded by newlines to
/// the same length. `Ok(None)` when the binary holds no placeholder at all; an error when it
/// holds the marker but not the exact placeholder bytes (e.g. a compressed image), or when
/// the script does not fit.
pub fn patch(data: &[u8], placeholder: &[u8], script: &[u8]) -> Result<Option<Vec<u8>>> {
    if script.len() > placeholder.len() {
        bail!(
            "the rendered script is {} bytes, more than the placeholder's capacity of {} bytes; \
             shorten it, or rebuild with a larger `placeholder.capacity`",
            script.len(),
            placeholder.len()
        );
    }
    let hits: Vec<usize> = memmem::find_iter(data, placeholder).collect();
    if hits.is_empty() {
        if memmem::find(data, MARKER.as_bytes()).is_some() {
            bail!(
                "it contains a placeholder marker but not the placeholder's exact bytes \
                 (a compressed image, or a placeholder of another capacity)"
            );
        }
        return Ok(None);
    }
    let mut replacement = script.to_vec();
    replacement.resize(placeholder.len(), b'\n');
    let mut out = data.to_vec();
    for at in hits {
        out[at..at + placeholder.len()].copy_from_slice(&replacement);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::ScriptKind;
    use crate::recipe::placeholder::placeholder_bytes;

    #[test]
    fn patches_in_place_and_keeps_the_length() {
        let ph = placeholder_bytes(ScriptKind::Ipxe, 1024);
        let mut bin = b"HEAD".to_vec();
        bin.extend_from_slice(&ph);
        bin.extend_from_slice(b"TAIL");
        let out = patch(&bin, &ph, b"#!ipxe\nchain http://x/\n")
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), bin.len());
        assert!(out.starts_with(b"HEAD#!ipxe\nchain http://x/\n\n\n"));
        assert!(out.ends_with(b"\n\nTAIL"));
    }

    #[test]
    fn refuses_a_script_that_does_not_fit() {
        let ph = placeholder_bytes(ScriptKind::Ipxe, 1024);
        let err = patch(&ph, &ph, &[b'#'; 1025]).unwrap_err().to_string();
        assert!(
            err.contains("1025 bytes") && err.contains("capacity of 1024"),
            "{err}"
        );
    }

    #[test]
    fn no_placeholder_and_damaged_placeholder() {
        let ph = placeholder_bytes(ScriptKind::Grub, 1024);
        assert!(patch(b"plain binary", &ph, b"x").unwrap().is_none());
        let damaged = &ph[..600];
        assert!(patch(damaged, &ph, b"x").is_err());
    }
}
