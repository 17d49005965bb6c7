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
for pkg in grub-efi-amd64-bin grub-pc-bin isolinux syslinux-common pxelinux ipxe \
  shim-signed shim-helpers-amd64-signed; do
  if ! ls "$debs/${pkg}"_*.deb >/dev/null 2>&1; then
    (cd "$debs" && apt-get download -q "$pkg")
  fi
done
# The Secure Boot tests sign a newer iPXE than bookworm's (2019, without the .sbat section
# shim demands or autoexec.ipxe): trixie's, pinned by the SHA256 of trixie's Packages index.
# Fetched from the Debian mirror apt is configured with here.
ipxe_trixie="$debs/ipxe-trixie_1.21.1+git20250501.dad20602+dfsg-1_all.deb"
if [ ! -f "$ipxe_trixie" ]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  [ -n "$mirror" ] || { echo "ci/test.sh: no Debian mirror in apt's sources" >&2; exit 1; }
  curl -fsSLo "$ipxe_trixie.part" \
    "${mirror%/}/pool/main/i/ipxe/ipxe_1.21.1+git20250501.dad20602+dfsg-1_all.deb"
  echo "eeaca79dbde0fb86c102bf1d362c6f6a67ed0ddab38b3dd12e1b332339f5dd99  $ipxe_trixie.part" \
    | sha256sum -c --quiet
  mv "$ipxe_trixie.part" "$ipxe_trixie"
fi

# A real S3 server for the publish tests (s3s-fs: SigV4 auth, multipart). Compiled once
# (about 5 minutes) into a cache outside the checkout, so later runs on the machine skip it.
tools="${BOOTFORGE_TOOLS:-$HOME/.cache/bootforge/tools}"
if [ ! -x "$tools/bin/s3s-fs" ]; then
  cargo install --locked --quiet s3s-fs@0.14.1 --features binary --root "$tools"
fi
export S3S_FS="$tools/bin/s3s-fs"
# Garage, the S3 server we recommend self-hosting, for the publisher races (about 10
# minutes to compile, once).
if [ ! -x "$tools/bin/garage" ]; then
  cargo install --locked --quiet garage@2.5.0 --root "$tools"
fi
export GARAGE="$tools/bin/garage"
# cargo-fuzz, for the fuzz targets in tests/fuzz, built with the nightly toolchain our
# machines have installed.
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  cargo install --locked --quiet cargo-fuzz@0.13.2 --root "$tools"
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "ci/test.sh: the fuzz targets need a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi

# The kill-point test (tests/reliability/kill.rs): how many random SIGKILLs.
export BOOTFORGE_KILL_POINTS="${BOOTFORGE_KILL_POINTS:-100}"

cargo fmt --all -- --check
cargo fmt --manifest-path tests/fuzz/Cargo.toml -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
# Every fuzz target for a bounded time (BOOTFORGE_FUZZ_SECONDS, default 60).
BOOTFORGE_TOOLS="$tools" bash ci/fuzz.sh "${BOOTFORGE_FUZZ_SECONDS:-60}"
