//! The neutral base every stage may use, and which uses no stage: digests and the readers and
//! writers that verify them, transfer progress, running processes (in their own process
//! group, killable as a tree), the executors that run a command in a pinned container, and
//! minisign signatures.

pub mod digest;
pub mod executor;
pub mod process;
pub mod progress;
pub mod sign;

pub use digest::{
    Digest, Hasher, HashingReader, HashingWriter, Named, VerifyingReader, hash_reader,
};

/// This machine's architecture as Debian names it (`dpkg --print-architecture`): what
/// debootstrap installs here, so what a toolchain image built here runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64el",
        "loongarch64" => "loong64",
        other => other,
    }
}
