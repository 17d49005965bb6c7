//! bootforge's end-to-end tests, in one binary. Each module drives the real `bootforge`
//! binary through the harness in `common` (a private store per test, real tools as the
//! readers of what it writes): `build`, `cli` (help, completions, man, doctor), `embed`, `errors` (bad input), `flash`, `package`,
//! `publish`, `secure_boot`, and `reliability` (the suite behind the README's Reliability section).

mod common;

mod build;
mod cli;
mod dhcp;
mod embed;
mod errors;
mod flash;
mod package;
mod publish;
mod reliability;
mod secure_boot;
mod shared;
