#!/usr/bin/env bash
# The whole test suite (the README's test command, and what .ci/run runs): installs what is
# missing (ci/setup.sh test), then formatting, lints, unit and end-to-end tests that build in
# real podman containers and boot what they make in QEMU, then every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh test

export BOOTFORGE_TEST_DEBS="${BOOTFORGE_TEST_DEBS:-$PWD/target/debs}"
tools="${BOOTFORGE_TOOLS:-$HOME/.cache/bootforge/tools}"
export S3S_FS="$tools/bin/s3s-fs" GARAGE="$tools/bin/garage"
# The kill-point test (tests/reliability/kill.rs): how many random SIGKILLs.
export BOOTFORGE_KILL_POINTS="${BOOTFORGE_KILL_POINTS:-100}"
# No BOOTFORGE_CONTAINER_ARGS: bootforge finds the flags this host's podman needs itself
# (and each test's store learns them anew). Set it to test with flags of your own.

cargo fmt --all -- --check
cargo fmt --manifest-path tests/fuzz/Cargo.toml -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
# Every fuzz target for a bounded time (BOOTFORGE_FUZZ_SECONDS, default 60).
BOOTFORGE_TOOLS="$tools" bash ci/fuzz.sh "${BOOTFORGE_FUZZ_SECONDS:-60}"
