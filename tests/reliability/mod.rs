//! The reliability and security suite: what the README's "Reliability" section promises,
//! each promise checked here against the real binary.

mod documents;
mod fuzz_corpus;
mod kill;
mod races;
mod secrets;
mod unpack;
