//! SHA-256 digests and the stream wrappers that compute them on the way through.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use anyhow::{Context, bail};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. Displayed as `sha256:<hex>`, the form every document in the store uses,
/// so that `gc` can find references by their prefix alone.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The lowercase hex form, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex characters, for names and messages.
    pub fn short(&self, n: usize) -> String {
        let mut h = self.hex();
        h.truncate(n);
        h
    }

    /// Parses 64 hex characters, with or without the `sha256:` prefix.
    pub fn parse(s: &str) -> anyhow::Result<Digest> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("`{s}` is not a sha256 digest (expected 64 hex characters)");
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part.to_ascii_lowercase(), &mut out)
            .with_context(|| format!("decoding `{s}`"))?;
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Digest> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A named blob: "this name is these bytes". The one type for it; a document that says
/// more about a blob (an output's mode, whether a script was patched in, its media type)
/// embeds it with `#[serde(flatten)]`, so the JSON stays flat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Named {
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
}

/// Incremental hasher that also counts bytes.
#[derive(Default, Clone)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digest and the number of bytes seen.
    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.sha.finalize().into()), self.len)
    }
}

/// A writer that hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Carries on from `hasher`, which already holds the bytes before these (a resumed
    /// download).
    pub fn resume(inner: W, hasher: Hasher) -> Self {
        HashingWriter { inner, hasher }
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        let (d, n) = self.hasher.finish();
        (self.inner, d, n)
    }

    /// Returns the inner writer and the hasher, to carry on elsewhere.
    pub fn into_parts(self) -> (W, Hasher) {
        (self.inner, self.hasher)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that fails at end of stream unless the bytes read hash to the expected digest,
/// so a consumer that reads to the end never silently accepts corrupt data. (Worth copying:
/// verification belongs in the stream, not in a second pass a caller may forget.)
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    what: String,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, what: impl Into<String>) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Hasher::new()),
            expected,
            what: what.into(),
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match (n, self.hasher.as_mut()) {
            (0, Some(_)) if !buf.is_empty() => {
                let (got, _) = self.hasher.take().expect("checked above").finish();
                if got != self.expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} is corrupt: expected {}, read {}",
                            self.what, self.expected, got
                        ),
                    ));
                }
            }
            (_, Some(h)) => h.update(&buf[..n]),
            (_, None) => {}
        }
        Ok(n)
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// The digest and length of what was read.
    pub fn finish(self) -> (Digest, u64) {
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes a whole stream.
pub fn hash_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut r, &mut w)?;
    let (_, d, n) = w.finish();
    Ok((d, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(Digest::parse(&d.hex()).unwrap(), d);
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&"g".repeat(64)).is_err());
    }

    #[test]
    fn verifying_reader_fails_on_mismatch() {
        let mut ok = VerifyingReader::new(&b"abc"[..], Digest::of(b"abc"), "blob");
        io::copy(&mut ok, &mut io::sink()).unwrap();
        let mut bad = VerifyingReader::new(&b"abd"[..], Digest::of(b"abc"), "blob");
        let err = io::copy(&mut bad, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
