//! Secure Boot signing: every EFI binary a medium carries is signed with the profile's key
//! after its script is written in, by `sbsign` in a pinned toolchain. Each signature is an
//! action of its own (the unsigned binary, the cert's fingerprint, the toolchain), so an
//! unchanged binary is never signed twice, and the key is never part of anything kept: it
//! reaches `sbsign` through stdin and a tmpfs inside the container.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::profile::{LoadedProfile, Shim};
use crate::base::Digest;
use crate::build::{self, Settings, Toolchain};
use crate::recipe::toolchain::LoadedSpec;
use crate::store::{Entry, Stored, layout};

/// The environment variable that may hold the key's PEM text instead of a key file.
pub const KEY_ENV: &str = "BOOTFORGE_SB_KEY";

/// Bumped when how a binary is signed changes.
const SIGN_SCHEMA: u32 = 1;

/// Signs each `in/*.efi` of the working directory into `out/` with the key read from
/// stdin, kept on a tmpfs only while it runs; `$1` is the cert, `$2` the time to sign at
/// (sbsign writes the signing time into the signature: the clock is frozen at it). The
/// wrapper's plain form (`faketime "DATE"`) only starts the clock at DATE and lets it run,
/// so a signature made a second later on a loaded machine differs; `-f` with an absolute
/// date stops it.
const SBSIGN_ALL: &str = r#"set -eu
umask 077
key=$(mktemp /dev/shm/bootforge-db.XXXXXX)
trap 'rm -f "$key"' EXIT
cat > "$key"
when=$(date -u -d "@$2" '+%Y-%m-%d %H:%M:%S')
mkdir -p out
for f in in/*.efi; do
  TZ=UTC faketime -f "$when" sbsign --key "$key" --cert "$1" --output "out/${f#in/}" "$f" >/dev/null
done"#;

/// What a signed medium's manifest says about its signing (and so its action key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureBootInfo {
    /// The sha256 of the certificate (DER), hex: its fingerprint (not a blob).
    pub cert_sha256: String,
    pub cert_subject: String,
    pub shim: Shim,
    /// The identity of the toolchain that signs (its rootfs digest).
    pub toolchain: String,
}

/// `actions/<key>.json` of one signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignEntry {
    pub schema: u32,
    pub key: String,
    /// Hex: the signed blob is what the entry keeps, not the unsigned one.
    pub unsigned: String,
    pub signed: Digest,
    pub size: u64,
    pub cert_sha256: String,
    pub toolchain: String,
    /// The signing time written into the signature.
    pub signed_at: i64,
}

impl Entry for SignEntry {
    fn blobs(&self) -> Vec<Digest> {
        vec![self.signed]
    }
}

/// A profile's key and cert, checked against each other, and the toolchain that signs.
pub struct Signer {
    cert_name: String,
    cert_pem: Vec<u8>,
    cert_der: Vec<u8>,
    key_pem: Vec<u8>,
    toolchain: Toolchain,
    pub info: SecureBootInfo,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signer").field("info", &self.info).finish()
    }
}

impl Signer {
    /// The profile's signer, if it has `secure_boot`: its cert read and checked (RSA,
    /// current, for code signing), its key read from the file or [`KEY_ENV`] and matched
    /// to the cert, its toolchain resolved (built the first time).
    pub fn load(
        settings: &Settings,
        recipes_dir: &Path,
        profile: &LoadedProfile,
    ) -> Result<Option<Signer>> {
        let Some(sb) = &profile.profile.secure_boot else {
            return Ok(None);
        };
        let cert_path = profile.relative(&sb.cert);
        let cert_name = cert_path.display().to_string();
        let cert_pem = fs::read(&cert_path).map_err(|e| {
            profile.error(
                &sb.cert,
                "secure_boot.cert",
                format!("cannot read {cert_name}: {e}"),
            )
        })?;
        let cert = Cert::parse(&cert_pem).map_err(|e| anyhow!("{cert_name}: {e}"))?;
        let (key_pem, key_name) = match std::env::var(KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => (text.into_bytes(), KEY_ENV.to_owned()),
            _ => {
                let Some(key) = &sb.key else {
                    return Err(profile.error(
                        "secure_boot",
                        "secure_boot.key",
                        format!("no key: name a PEM key file here, or set {KEY_ENV} to its text"),
                    ));
                };
                let path = profile.relative(key);
                let name = path.display().to_string();
                let pem = fs::read(&path).map_err(|e| {
                    profile.error(key, "secure_boot.key", format!("cannot read {name}: {e}"))
                })?;
                (pem, name)
            }
        };
        let modulus = rsa_key_modulus(&key_pem).map_err(|e| anyhow!("{key_name}: {e}"))?;
        if modulus != cert.modulus {
            bail!(
                "{key_name} is not the key of {cert_name}: the cert was made for another key \
                 (a key and its cert come in pairs, as `bootforge keygen --secure-boot` makes them)"
            );
        }
        let spec_path = recipes_dir
            .join("toolchains")
            .join(format!("{}.yaml", sb.toolchain));
        let spec = LoadedSpec::load(&spec_path)
            .map_err(|e| profile.error(&sb.toolchain, "secure_boot.toolchain", format!("{e:#}")))?;
        let toolchain = build::toolchain::for_tool(&spec, "secure boot", settings)?;
        Ok(Some(Signer {
            info: SecureBootInfo {
                cert_sha256: Digest::of(&cert.der).hex(),
                cert_subject: cert.subject,
                shim: sb.shim,
                toolchain: toolchain.identity(),
            },
            cert_name,
            cert_pem,
            cert_der: cert.der,
            key_pem,
            toolchain,
        }))
    }

    /// Signs each blob (labelled for messages) as at `epoch`, reusing signatures made
    /// before; returns the signed blob of each. One toolchain run signs all that are new.
    pub fn sign(
        &self,
        settings: &Settings,
        blobs: &BTreeMap<Digest, String>,
        epoch: i64,
    ) -> Result<BTreeMap<Digest, Stored>> {
        let store = &settings.store;
        let mut signed = BTreeMap::new();
        let mut todo = BTreeMap::new();
        for (&unsigned, what) in blobs {
            let key = self.action_key(&unsigned, epoch);
            if let Some((entry, origin)) = settings.recorded::<SignEntry>(&key)? {
                if origin == crate::store::Origin::Local {
                    settings.share(&key, &entry)?;
                }
                signed.insert(
                    unsigned,
                    Stored {
                        digest: entry.signed,
                        size: entry.size,
                    },
                );
                continue;
            }
            let data = store.read_blob(&unsigned)?;
            match existing_signature(&data, &self.cert_der).with_context(|| what.clone())? {
                Existing::None => {
                    todo.insert(unsigned, (what.as_str(), data));
                }
                // Ours already (a binary taken from an earlier signed medium): as it is.
                Existing::Ours => {
                    self.record(settings, &key, unsigned, &data, epoch)?;
                    signed.insert(
                        unsigned,
                        Stored {
                            digest: unsigned,
                            size: data.len() as u64,
                        },
                    );
                }
                Existing::Theirs => bail!(
                    "{what} is already signed, by another key: bootforge signs unsigned \
                     binaries (take the recipe's unsigned output, or put this one on the \
                     medium without `secure_boot`)"
                ),
            }
        }
        if todo.is_empty() {
            return Ok(signed);
        }
        settings.may_run(&format!(
            "signing {} EFI binar{}",
            todo.len(),
            if todo.len() == 1 { "y" } else { "ies" }
        ))?;
        let work = store.temp_dir("sign-")?;
        fs::create_dir(work.path().join("in"))?;
        fs::write(work.path().join("db.crt"), &self.cert_pem)?;
        for (unsigned, (_, data)) in &todo {
            fs::write(
                work.path()
                    .join("in")
                    .join(format!("{}.efi", unsigned.hex())),
                data,
            )?;
        }
        let epoch_arg = epoch.to_string();
        let argv: Vec<String> = ["sh", "-c", SBSIGN_ALL, "sh", "db.crt", &epoch_arg]
            .iter()
            .map(|s| s.to_string())
            .collect();
        build::run_in(
            settings,
            &self.toolchain,
            work.path(),
            Some(&self.key_pem),
            &argv,
        )
        .map_err(|e| {
            let names: Vec<&str> = todo.values().map(|(w, _)| *w).collect();
            anyhow!(
                "signing {} with the key of {}: {e:#}",
                names.join(", "),
                self.cert_name
            )
        })?;
        for (unsigned, (what, _)) in &todo {
            let out = work
                .path()
                .join("out")
                .join(format!("{}.efi", unsigned.hex()));
            let data = fs::read(&out).with_context(|| format!("sbsign left no {what}"))?;
            if !matches!(existing_signature(&data, &self.cert_der)?, Existing::Ours) {
                bail!("sbsign's output for {what} carries no signature with our cert");
            }
            // A signature made at another time is other bytes: refuse it rather than store
            // a medium that the next machine would not reproduce.
            let want = signing_time_of(epoch);
            match signing_time(&data) {
                Some(t) if t == want => {}
                t => bail!(
                    "sbsign signed {what} at {} instead of {} (SOURCE_DATE_EPOCH): the \
                     signing toolchain's faketime did not hold the clock",
                    t.as_deref().unwrap_or("no time"),
                    want
                ),
            }
            let key = self.action_key(unsigned, epoch);
            let stored = self.record(settings, &key, *unsigned, &data, epoch)?;
            signed.insert(*unsigned, stored);
        }
        Ok(signed)
    }

    /// Stores `data` as the signed form of `unsigned` and records the action.
    fn record(
        &self,
        settings: &Settings,
        key: &str,
        unsigned: Digest,
        data: &[u8],
        epoch: i64,
    ) -> Result<Stored> {
        let stored = settings.store.put_bytes(data)?;
        let entry = SignEntry {
            schema: SIGN_SCHEMA,
            key: key.to_owned(),
            unsigned: unsigned.hex(),
            signed: stored.digest,
            size: stored.size,
            cert_sha256: self.info.cert_sha256.clone(),
            toolchain: self.info.toolchain.clone(),
            signed_at: epoch,
        };
        settings.store.write_json(&layout::action(key), &entry)?;
        settings.share(key, &entry)?;
        Ok(stored)
    }

    fn action_key(&self, unsigned: &Digest, epoch: i64) -> String {
        let canonical = serde_json::json!({
            "action": "sbsign",
            "epoch": epoch,
            "schema": SIGN_SCHEMA,
            "unsigned": unsigned.hex(),
            "cert_sha256": self.info.cert_sha256,
            "toolchain": self.info.toolchain,
        });
        Digest::of(canonical.to_string().as_bytes()).hex()
    }
}

/// A certificate as the checks need it.
struct Cert {
    der: Vec<u8>,
    subject: String,
    /// The RSA modulus, without leading zero bytes.
    modulus: Vec<u8>,
}

impl Cert {
    /// Parses a PEM certificate and refuses what firmware would not take or what was not
    /// made for signing code: not RSA, outside its validity, a key usage without digital
    /// signatures, an extended key usage without code signing.
    fn parse(pem: &[u8]) -> Result<Cert> {
        use x509_parser::public_key::PublicKey;
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
        if pem.label != "CERTIFICATE" {
            bail!(
                "holds a PEM `{}`, not a `CERTIFICATE` (the cert goes in secure_boot.cert, the key in secure_boot.key)",
                pem.label
            );
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
        let modulus = match cert.public_key().parsed() {
            Ok(PublicKey::RSA(rsa)) => strip_zeros(rsa.modulus).to_vec(),
            _ => bail!(
                "is not an RSA certificate: UEFI firmware verifies RSA signatures \
                 (`bootforge keygen --secure-boot` makes RSA 2048)"
            ),
        };
        let validity = cert.validity();
        let now = x509_parser::time::ASN1Time::now();
        if now > validity.not_after {
            bail!(
                "the certificate expired on {} (make a new one: `bootforge keygen --secure-boot`)",
                validity.not_after
            );
        }
        if now < validity.not_before {
            bail!(
                "the certificate is not valid before {}",
                validity.not_before
            );
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.digital_signature()
        {
            bail!(
                "the certificate's key usage does not allow digital signatures: not a code-signing cert"
            );
        }
        if let Ok(Some(eku)) = cert.extended_key_usage()
            && !(eku.value.code_signing || eku.value.any)
        {
            bail!("the certificate's extended key usage does not include code signing");
        }
        Ok(Cert {
            der: pem.contents.clone(),
            subject: cert.subject().to_string(),
            modulus,
        })
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    &b[n..]
}

/// The modulus of an unencrypted RSA private key in PEM (PKCS#8 or PKCS#1): only parsed,
/// to match it to its cert.
fn rsa_key_modulus(pem: &[u8]) -> Result<Vec<u8>> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| anyhow!("not a PEM private key: {e}"))?;
    let pkcs1 = match pem.label.as_str() {
        "RSA PRIVATE KEY" => pem.contents.clone(),
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfoRef::try_from(pem.contents.as_slice())
                .map_err(|e| anyhow!("not a PKCS#8 private key: {e}"))?;
            if info.algorithm.oid != RSA_ENCRYPTION {
                bail!("is not an RSA key: UEFI firmware verifies RSA signatures");
            }
            info.private_key.as_bytes().to_vec()
        }
        "ENCRYPTED PRIVATE KEY" => bail!(
            "the key is encrypted: sbsign cannot ask for its password here; decrypt it \
             (`openssl pkey -in KEY -out PLAIN`) and keep the plain key private"
        ),
        other => bail!("holds a PEM `{other}`, not an RSA private key"),
    };
    let key = pkcs1::RsaPrivateKeyRef::try_from(pkcs1.as_slice())
        .map_err(|e| anyhow!("not an RSA private key: {e}"))?;
    Ok(strip_zeros(key.modulus.as_bytes()).to_vec())
}

/// rsaEncryption (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Whether a PE image is signed, and by us.
enum Existing {
    None,
    Ours,
    Theirs,
}

/// A PE image's headers and section table: all signing needs to read (goblin's full parse
/// also resolves debug and import data, which some EFI images lay out loosely).
fn pe_headers(
    data: &[u8],
) -> Result<(
    goblin::pe::header::Header<'_>,
    Vec<goblin::pe::section_table::SectionTable>,
)> {
    use goblin::pe::header::{Header, SIZEOF_COFF_HEADER, SIZEOF_PE_MAGIC};
    let header = Header::parse(data)
        .map_err(|e| anyhow!("not an EFI (PE) image, so it cannot be signed: {e}"))?;
    let mut offset = header.dos_header.pe_pointer as usize
        + SIZEOF_PE_MAGIC
        + SIZEOF_COFF_HEADER
        + header.coff_header.size_of_optional_header as usize;
    let sections = header
        .coff_header
        .sections(data, &mut offset)
        .map_err(|e| anyhow!("its PE section table is unreadable: {e}"))?;
    Ok((header, sections))
}

/// Reads a PE image's certificate table: empty, holding our cert (sbsign puts the signer's
/// cert in the PKCS#7 it writes), or someone else's signature.
fn existing_signature(data: &[u8], cert_der: &[u8]) -> Result<Existing> {
    let (header, _) = pe_headers(data)?;
    let table = header
        .optional_header
        .and_then(|h| h.data_directories.get_certificate_table().copied());
    let Some(table) = table.filter(|t| t.size > 0) else {
        return Ok(Existing::None);
    };
    // The certificate table's "address" is a file offset.
    let start = table.virtual_address as usize;
    let bytes = data
        .get(start..start.saturating_add(table.size as usize))
        .context("its certificate table lies outside the file")?;
    Ok(if memchr::memmem::find(bytes, cert_der).is_some() {
        Existing::Ours
    } else {
        Existing::Theirs
    })
}

/// PKCS#9 signingTime (1.2.840.113549.1.9.5), DER-encoded, as the signed attributes carry it.
const SIGNING_TIME_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05,
];

/// The signing time in a signed PE image's PKCS#7 (its UTCTime or GeneralizedTime text,
/// such as `200101000000Z`); none when it holds none.
fn signing_time(data: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(data, SIGNING_TIME_OID)? + SIGNING_TIME_OID.len();
    // SET { UTCTime (0x17) | GeneralizedTime (0x18) }, short lengths.
    let [0x31, _, 0x17 | 0x18, len] = *data.get(at..at + 4)? else {
        return None;
    };
    let text = data.get(at + 4..at + 4 + len as usize)?;
    String::from_utf8(text.to_vec()).ok()
}

/// The UTCTime text sbsign writes for a Unix time (X.509's form for 1950–2049).
fn signing_time_of(epoch: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    let rfc = humantime::format_rfc3339_seconds(t).to_string();
    let digits: String = rfc.chars().filter(char::is_ascii_digit).collect();
    if (1950..2050).contains(&digits[..4].parse::<u32>().unwrap_or(0)) {
        format!("{}Z", &digits[2..])
    } else {
        format!("{digits}Z")
    }
}

/// Whether a PE image has an `.sbat` section, which shim requires of what it starts.
pub fn has_sbat(data: &[u8]) -> bool {
    pe_headers(data).is_ok_and(|(_, sections)| {
        sections
            .iter()
            .any(|s| s.name().is_ok_and(|n| n == ".sbat"))
    })
}

/// The blobs of a medium to sign, each with what it is (for messages).
#[derive(Debug, Default)]
pub struct ToSign {
    pub blobs: BTreeMap<Digest, String>,
}

impl ToSign {
    pub fn add(&mut self, blob: Digest, what: String) {
        self.blobs.entry(blob).or_insert(what);
    }
}

/// The files `keygen --secure-boot NAME` writes, by suffix.
pub const KEYGEN_FILES: [(&str, &str); 5] = [
    ("db.key", "-db.key"),
    ("db.crt", "-db.crt"),
    ("db.esl", "-db.esl"),
    ("db.auth", "-db.auth"),
    ("OVMF_VARS.fd", "-OVMF_VARS.fd"),
];

/// Makes a db key and cert, its EFI signature list and signed update (`.auth`), and an
/// OVMF variable store that trusts the cert with Secure Boot on, in the toolchain.
const KEYGEN: &str = r#"set -eu
umask 077
openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
  -subj "/CN=$1 Secure Boot db key/" \
  -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=codeSigning \
  -keyout db.key -out db.crt 2>/dev/null
cert-to-efi-sig-list -g "$2" db.crt db.esl
sign-efi-sig-list -g "$2" -k db.key -c db.crt db db.esl db.auth >/dev/null
virt-fw-vars --input /usr/share/OVMF/OVMF_VARS_4M.fd --output OVMF_VARS.fd \
  --set-pk "$2" db.crt --add-kek "$2" db.crt --add-db "$2" db.crt --secure-boot >/dev/null
chmod 0644 db.crt db.esl db.auth OVMF_VARS.fd"#;

/// What `keygen --secure-boot` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SecureBootKeys {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub esl: PathBuf,
    pub auth: PathBuf,
    pub ovmf_vars: PathBuf,
    /// Hex sha256 of the cert (DER), as signed media's manifests name it.
    pub cert_sha256: String,
    pub owner_guid: String,
}

/// `keygen --secure-boot NAME`: `NAME-db.key` (0600), `NAME-db.crt`, `NAME-db.esl`,
/// `NAME-db.auth` and `NAME-OVMF_VARS.fd`, made in the toolchain beside where they go and
/// moved into place only when all are made; refuses to overwrite any.
pub fn keygen(settings: &Settings, recipes_dir: &Path, base: &Path) -> Result<SecureBootKeys> {
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .with_context(|| format!("{}: not a key name", base.display()))?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        bail!("key name `{name}`: use letters, digits, `-`, `_` and `.`");
    }
    let dir = match base.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // A directory made here holds a secret key: only its owner may look in.
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .with_context(|| format!("making {}", dir.display()))?;
    let target = |suffix: &str| dir.join(format!("{name}{suffix}"));
    for (_, suffix) in KEYGEN_FILES {
        let t = target(suffix);
        if t.symlink_metadata().is_ok() {
            bail!(
                "{} exists: keygen never overwrites keys (move it away, or choose another name)",
                t.display()
            );
        }
    }
    let spec = LoadedSpec::load(&recipes_dir.join("toolchains/secure-boot.yaml"))?;
    let toolchain = build::toolchain::for_tool(&spec, "keygen", settings)?;
    // Made next to where the files go (never in the store), so each is moved, not copied.
    let work = tempfile::Builder::new()
        .prefix(".bootforge-keygen-")
        .tempdir_in(&dir)
        .with_context(|| format!("making a directory in {}", dir.display()))?;
    let guid = uuid::Uuid::new_v4().to_string();
    let argv: Vec<String> = ["sh", "-c", KEYGEN, "sh", &name, &guid]
        .iter()
        .map(|s| s.to_string())
        .collect();
    build::run_in(settings, &toolchain, work.path(), None, &argv)?;
    let cert = fs::read(work.path().join("db.crt"))?;
    let cert_der = Cert::parse(&cert)?.der;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        work.path().join("db.key"),
        fs::Permissions::from_mode(0o600),
    )?;
    let mut done: BTreeSet<PathBuf> = BTreeSet::new();
    for (made, suffix) in KEYGEN_FILES {
        let to = target(suffix);
        // A hard link fails if `to` appeared meanwhile: never overwritten.
        if let Err(e) = fs::hard_link(work.path().join(made), &to) {
            for d in &done {
                let _ = fs::remove_file(d);
            }
            bail!("writing {}: {e}", to.display());
        }
        done.insert(to);
    }
    Ok(SecureBootKeys {
        key: target("-db.key"),
        cert: target("-db.crt"),
        esl: target("-db.esl"),
        auth: target("-db.auth"),
        ovmf_vars: target("-OVMF_VARS.fd"),
        cert_sha256: Digest::of(&cert_der).hex(),
        owner_guid: guid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_time_is_read_as_sbsign_writes_it() {
        assert_eq!(signing_time_of(1_577_836_800), "200101000000Z");
        assert_eq!(signing_time_of(2_524_608_000), "20500101000000Z");
        let mut pkcs7 = b"...".to_vec();
        pkcs7.extend_from_slice(SIGNING_TIME_OID);
        pkcs7.extend_from_slice(&[0x31, 0x0f, 0x17, 0x0d]);
        pkcs7.extend_from_slice(b"200101000001Z...");
        assert_eq!(signing_time(&pkcs7).as_deref(), Some("200101000001Z"));
        assert_eq!(signing_time(b"no signature here"), None);
    }
}
