//! The reliability and security suite: what the README's "Reliability" section promises,
//! each promise checked here against the real binary.

#[path = "../common/mod.rs"]
mod common;

mod documents;
mod fuzz_corpus;
mod kill;
mod races;
mod secrets;
mod unpack;
