//! Media profiles (`recipes/media/*.yaml`): which loader boots each platform, which recipe
//! provides it, and default template variables.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::recipe::parse_yaml;

/// The default profile, relative to the recipes directory.
pub const DEFAULT_PROFILE: &str = "media/default.yaml";

/// A loader for one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loader {
    Ipxe,
    Grub,
    /// SYSLINUX's lpxelinux, which fetches `chain_url` as its next config (PXE, BIOS only).
    Syslinux,
    None,
}

/// Which loader boots each platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loaders {
    #[serde(default = "ipxe")]
    pub bios: Loader,
    #[serde(default = "ipxe", rename = "uefi-x64")]
    pub uefi_x64: Loader,
    #[serde(default = "ipxe", rename = "uefi-arm64")]
    pub uefi_arm64: Loader,
}

fn ipxe() -> Loader {
    Loader::Ipxe
}

impl Default for Loaders {
    fn default() -> Loaders {
        Loaders {
            bios: Loader::Ipxe,
            uefi_x64: Loader::Ipxe,
            uefi_arm64: Loader::Ipxe,
        }
    }
}

/// A media profile as written in YAML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub loaders: Loaders,
    /// Recipe (name or path relative to the profile) providing each loader: keys `ipxe`,
    /// `grub`.
    #[serde(default)]
    pub recipes: BTreeMap<String, String>,
    /// Where single files come from, overriding the defaults: role (`ipxe.efi`,
    /// `isolinux.bin`, ...) → `RECIPE:OUTPUT`, RECIPE a name or a path relative to the
    /// profile.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Template variables (`chain_url`, ...); `--set` overrides.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Timestamp for everything inside the media; default: the newest input build's
    /// SOURCE_DATE_EPOCH.
    #[serde(default)]
    pub epoch: Option<i64>,
    /// Directory of the DHCP snippet templates, relative to the profile.
    #[serde(default = "default_templates")]
    pub templates: String,
    /// Sign every EFI binary of the medium for Secure Boot, after the script is written in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<SecureBoot>,
}

/// A profile's `secure_boot`: the key every EFI binary is signed with, and how firmware
/// comes to trust it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureBoot {
    /// The PEM private key, relative to the profile; `BOOTFORGE_SB_KEY` (the PEM text)
    /// takes its place, for CI secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The PEM certificate of the key, relative to the profile.
    pub cert: String,
    /// `none`: the firmware's db trusts the cert. `debian`: Microsoft-signed shim first,
    /// which trusts the cert once it is in the MOK list.
    #[serde(default)]
    pub shim: Shim,
    /// The toolchain spec (`recipes/toolchains/NAME.yaml`) whose `sbsign` signs.
    #[serde(default = "sign_toolchain")]
    pub toolchain: String,
}

/// Which shim, if any, starts the signed loader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shim {
    #[default]
    None,
    Debian,
}

fn sign_toolchain() -> String {
    "secure-boot".into()
}

fn default_templates() -> String {
    "../../embed".into()
}

/// A profile read from disk.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    pub path: PathBuf,
    /// The file as read, for errors that name a line.
    pub text: String,
    pub profile: Profile,
}

impl LoadedProfile {
    /// Reads a media profile file.
    pub fn load(path: &Path) -> Result<LoadedProfile> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading media profile {}", path.display()))?;
        LoadedProfile::parse(path, &text)
    }

    /// Parses `text` as the media profile at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<LoadedProfile> {
        let profile: Profile = parse_yaml(path, text)?;
        Ok(LoadedProfile {
            path: path.to_owned(),
            text: text.to_owned(),
            profile,
        })
    }

    /// Refuses loaders the target cannot boot, naming the profile and the field.
    pub fn check_target(&self, target: super::Target) -> Result<()> {
        let loaders = &self.profile.loaders;
        let at = self.path.display();
        let network_only = |loader: &str| {
            anyhow::anyhow!(
                "{at}: loaders.bios: {loader} chains over the network, so it is for pxe-bundle; \
                 {} boots BIOS through iPXE",
                target.name()
            )
        };
        let bundle = target == super::Target::PxeBundle;
        if loaders.bios == Loader::Grub && !bundle {
            return Err(network_only("grub"));
        }
        if loaders.bios == Loader::Syslinux && !bundle {
            return Err(network_only("syslinux"));
        }
        if matches!(loaders.uefi_arm64, Loader::Grub | Loader::Syslinux) {
            bail!("{at}: loaders.uefi-arm64: only ipxe or none");
        }
        if loaders.uefi_x64 == Loader::Syslinux {
            bail!("{at}: loaders.uefi-x64: ipxe, grub or none (SYSLINUX is used for BIOS)");
        }
        if [loaders.bios, loaders.uefi_x64, loaders.uefi_arm64] == [Loader::None; 3] {
            bail!("{at}: every loader is `none`: nothing to package");
        }
        Ok(())
    }

    /// An error about `field`, at the line where `needle` first appears.
    pub fn error(&self, needle: &str, field: &str, message: String) -> anyhow::Error {
        crate::recipe::RecipeError::at_needle(&self.path, &self.text, needle, field, message).into()
    }

    /// A path written in the profile, relative to it.
    pub fn relative(&self, path: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(path)
    }

    /// A template of the profile's template directory.
    pub fn template(&self, name: &str) -> PathBuf {
        self.path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.profile.templates)
            .join(name)
    }

    /// The recipe reference for `loader` (`ipxe` → `ipxe` unless the profile's `recipes`
    /// says otherwise).
    pub fn recipe_for(&self, loader: &str) -> String {
        match self.profile.recipes.get(loader) {
            Some(r) => self.recipe_ref(r),
            None => loader.to_owned(),
        }
    }

    /// A recipe named in the profile: a path relative to the profile when it ends in
    /// `.yaml`, else a recipe name.
    pub fn recipe_ref(&self, r: &str) -> String {
        if r.ends_with(".yaml") {
            self.path
                .parent()
                .unwrap_or(Path::new("."))
                .join(r)
                .display()
                .to_string()
        } else {
            r.to_owned()
        }
    }
}
