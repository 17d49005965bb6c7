//! The neutral base every stage may use, and which uses no stage: digests and the readers and
//! writers that verify them, transfer progress, running processes (in their own process
//! group, killable as a tree), the executors that run a command in a pinned container, and
//! minisign signatures.

pub mod digest;
pub mod executor;
pub mod process;
pub mod progress;
pub mod sign;

pub use digest::{Digest, Hasher, HashingWriter, Named, VerifyingReader, hash_reader};
