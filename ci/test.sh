#!/usr/bin/env bash
# The test suite (the README's test command): formatting, lints, then unit and end-to-end
# tests that build in real podman containers from a toolchain made with debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

# Machines like our CI cannot run podman's defaults: crun fails on a hybrid cgroup host and
# raising the default ulimits needs CAP_SYS_RESOURCE. These flags work everywhere runc is
# installed; set BOOTFORGE_CONTAINER_ARGS yourself (even to "") to override.
export BOOTFORGE_CONTAINER_ARGS="${BOOTFORGE_CONTAINER_ARGS---runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096}"

# Real boot loaders from Debian's binary packages, entered into test stores by sha256.
debs="${BOOTFORGE_TEST_DEBS:-$PWD/target/debs}"
export BOOTFORGE_TEST_DEBS="$debs"
mkdir -p "$debs"
for pkg in grub-efi-amd64-bin grub-pc-bin isolinux syslinux-common pxelinux ipxe; do
  if ! ls "$debs/${pkg}"_*.deb >/dev/null 2>&1; then
    (cd "$debs" && apt-get download -q "$pkg")
  fi
done

# A real S3 server for the publish tests (s3s-fs: SigV4 auth, multipart). Compiled once
# (about 5 minutes) into a cache outside the checkout, so later runs on the machine skip it.
tools="${BOOTFORGE_TOOLS:-$HOME/.cache/bootforge/tools}"
if [ ! -x "$tools/bin/s3s-fs" ]; then
  cargo install --locked --quiet s3s-fs@0.14.1 --features binary --root "$tools"
fi
export S3S_FS="$tools/bin/s3s-fs"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
