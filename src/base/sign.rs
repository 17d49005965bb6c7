//! minisign-compatible Ed25519 signatures, so people can check what we publish with the
//! standard `minisign -V` and nothing of ours.
//!
//! Keys may be encrypted (minisign's default); the password then comes from
//! `BOOTFORGE_KEY_PASSWORD` (resolved by `config`), since publishing runs unattended in CI.

use std::fs::OpenOptions;
use std::io::{Cursor, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};
use serde::Serialize;

/// A key pair `keygen` wrote.
#[derive(Debug, Serialize)]
pub struct KeyPair {
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
    /// The public key as `minisign -P` takes it.
    pub public_key_base64: String,
}

/// Creates `<base>.key` (secret, mode 0600) and `<base>.pub`; never overwrites either.
/// The key is encrypted with `password` when there is one.
pub fn keygen(base: &Path, password: Option<&str>) -> Result<KeyPair> {
    let key_path = base.with_extension("key");
    let pub_path = base.with_extension("pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            anyhow::bail!("{} already exists; not overwriting a key", p.display());
        }
    }
    let minisign::KeyPair { pk, sk } = match password {
        Some(p) => minisign::KeyPair::generate_encrypted_keypair(Some(p.to_owned())),
        None => minisign::KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| anyhow!("generating a key pair: {e}"))?;
    let sk_box = sk
        .to_box(Some("bootforge secret key"))
        .map_err(|e| anyhow!("encoding the secret key: {e}"))?;
    let pk_box = pk
        .to_box()
        .map_err(|e| anyhow!("encoding the public key: {e}"))?;
    write_new(&key_path, sk_box.to_string().as_bytes(), 0o600)?;
    write_new(&pub_path, pk_box.to_string().as_bytes(), 0o644)?;
    Ok(KeyPair {
        secret_key: key_path,
        public_key: pub_path,
        public_key_base64: pk.to_base64(),
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))
}

/// A loaded secret key.
pub struct Signer {
    sk: SecretKey,
    pk: PublicKey,
}

impl Signer {
    /// Loads a minisign secret key file (ours or `minisign -G`'s), decrypting it with
    /// `password` when it is encrypted.
    pub fn load(path: &Path, password: Option<&str>) -> Result<Signer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        let sk_box = SecretKeyBox::from_string(&text)
            .map_err(|e| anyhow!("{}: not a minisign secret key: {e}", path.display()))?;
        let sk = match password {
            Some(p) => sk_box.into_secret_key(Some(p.to_owned())),
            None => sk_box.into_unencrypted_secret_key(),
        }
        .map_err(|e| {
            anyhow!(
                "{}: cannot use the secret key ({e}); an encrypted key needs its password in \
                 BOOTFORGE_KEY_PASSWORD",
                path.display()
            )
        })?;
        let pk = PublicKey::from_secret_key(&sk)
            .map_err(|e| anyhow!("{}: deriving the public key: {e}", path.display()))?;
        Ok(Signer { sk, pk })
    }

    /// Whether `sig` (a `.minisig` file's bytes) is this key's valid signature of `data`.
    pub fn signed(&self, data: &[u8], sig: &[u8]) -> bool {
        std::str::from_utf8(sig)
            .ok()
            .and_then(|t| SignatureBox::from_string(t).ok())
            .is_some_and(|b| {
                minisign::verify(&self.pk, &b, Cursor::new(data), true, false, false).is_ok()
            })
    }

    /// A `.minisig` file's text for `data`, with `comment` as its trusted comment.
    pub fn sign(&self, data: &[u8], comment: &str) -> Result<String> {
        minisign::sign(
            Some(&self.pk),
            &self.sk,
            Cursor::new(data),
            Some(comment),
            None,
        )
        .map(|b| b.into_string())
        .map_err(|e| anyhow!("signing: {e}"))
    }
}

/// A loaded public key.
pub struct Verifier {
    pk: PublicKey,
    path: PathBuf,
}

impl Verifier {
    /// Loads a minisign public key file, or takes the key itself (the base64 line).
    pub fn load(path: &Path) -> Result<Verifier> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the public key {}", path.display()))?;
        let pk = if text.lines().count() >= 2 {
            PublicKeyBox::from_string(&text).and_then(PublicKeyBox::into_public_key)
        } else {
            PublicKey::from_base64(text.trim())
        }
        .map_err(|e| anyhow!("{}: not a minisign public key: {e}", path.display()))?;
        Ok(Verifier {
            pk,
            path: path.to_owned(),
        })
    }

    /// Checks `sig` (a `.minisig` file's text) over `data`; `what` names the data in errors.
    pub fn verify(&self, data: &[u8], sig: &str, what: &str) -> Result<()> {
        let sig = SignatureBox::from_string(sig)
            .map_err(|e| anyhow!("{what}: the signature is malformed: {e}"))?;
        minisign::verify(&self.pk, &sig, Cursor::new(data), true, false, false).map_err(|e| {
            anyhow!(
                "{what}: signature check with {} FAILED: {e}",
                self.path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let KeyPair {
            secret_key: key,
            public_key: public,
            ..
        } = keygen(&dir.path().join("k"), None).unwrap();
        let s = Signer::load(&key, None).unwrap();
        let v = Verifier::load(&public).unwrap();
        let sig = s.sign(b"hello\n", "bootforge test").unwrap();
        v.verify(b"hello\n", &sig, "x").unwrap();
        assert!(s.signed(b"hello\n", sig.as_bytes()));
        assert!(!s.signed(b"hellO\n", sig.as_bytes()));
        let e = v.verify(b"hellO\n", &sig, "x").unwrap_err().to_string();
        assert!(e.contains("FAILED"), "{e}");
        assert!(
            keygen(&dir.path().join("k"), None).is_err(),
            "keygen overwrote a key"
        );
    }
}
