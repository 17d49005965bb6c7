//! The reliability and security suite: what the README's "Reliability" section promises,
//! each promise checked here against the real binary.

#[path = "../common/mod.rs"]
mod common;

mod documents;
mod unpack;
