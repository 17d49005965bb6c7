#!/usr/bin/env bash
# Installs what is missing for bootforge on Debian or Ubuntu, and nothing that is there:
#   bash ci/setup.sh run    what `bootforge build` needs (podman, runc, debootstrap, git, …)
#   bash ci/setup.sh test   all of that and what the test suite needs: QEMU and firmware, the
#                           readers (xorriso, mtools, …), the aws CLI, the Debian packages the
#                           tests boot, and S3 servers compiled once into ~/.cache/bootforge
# A second run installs nothing and takes about a second. Needs root for apt-get (it says
# so, with the command, when something is missing and it is not root).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}

# podman + runc run the build containers (runc where crun cannot: bootforge finds that out
# itself); debootstrap makes toolchain rootfses; git and tar are used by sources;
# squashfs-tools packs toolchains other machines mount instead of unpacking.
apt_run=(podman runc uidmap debootstrap git tar ca-certificates squashfs-tools)
# QEMU with OVMF and AAVMF (x86_64 and arm64 UEFI, with their Secure Boot builds and keys)
# boots what the tests produce; dnsmasq, xorriso, sfdisk (fdisk), fsck.fat (dosfstools) and
# mtools read back what bootforge writes; faketime moves the clock for the reproducibility
# test; minisign checks our signatures; e2fsprogs makes the filesystem flash's
# mounted-target test mounts; sbsigntool (sbverify) checks Secure Boot signatures and
# openssl makes the bad certificates the tests try; curl fetches one pinned .deb; bash, zsh,
# fish, man and groff read our completions and manual pages; xz-utils is the reference the
# benchmarks compare against and a reader of the .img.xz we publish; iproute2 makes the
# test network (namespace, bridge, taps) real dnsmasq serves boot guests on, and
# isc-dhcp-server's dhcpd checks our ISC snippet.
apt_test=(qemu-system-x86 qemu-system-arm ovmf qemu-efi-aarch64 dnsmasq-base faketime xorriso
  fdisk dosfstools mtools minisign e2fsprogs sbsigntool openssl curl python3 python3-pip
  zsh fish man-db groff-base xz-utils iproute2 isc-dhcp-server)

case "$mode" in
  run) packages=("${apt_run[@]}") ;;
  test) packages=("${apt_run[@]}" "${apt_test[@]}") ;;
  *) echo "usage: bash ci/setup.sh run|test" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ci/setup.sh: missing ${missing[*]}; as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "ci/setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Packages with a daemon (isc-dhcp-server) must not start it: the tests run their own.
  # Where no policy-rc.d says so already, one does during the install.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "ci/setup.sh: no cargo on PATH: install Rust first (https://rustup.rs)" >&2
  exit 1
fi
[ "$mode" = test ] || exit 0

# pip_install MODULE_CHECK PACKAGE...: bookworm's own pip needs --break-system-packages; a
# pyenv or venv python does not.
pip_install() {
  if ! eval "$1" >/dev/null 2>&1; then
    python3 -m pip install --quiet "${@:2}" \
      || python3 -m pip install --quiet --break-system-packages "${@:2}"
  fi
}
# The aws CLI, the client people download from buckets with, reads back what we publish
# (Debian's awscli is older).
pip_install 'aws --version' 'awscli==1.45.11'
# virt-fw-vars enrols certs in OVMF variable stores for the Secure Boot tests (shim's MOK
# list).
pip_install 'command -v virt-fw-vars' 'virt-firmware==26.10'
# The parsers ci/check-schedulers.py reads the Nomad, Kubernetes and GitHub Actions
# templates with (none of those engines runs here), with their schemas.
pip_install "python3 -c 'import hcl2, kubernetes_validate, yaml' && command -v check-jsonschema" \
  'python-hcl2==8.1.4' 'kubernetes-validate==1.37.0' 'check-jsonschema==0.39.0' 'PyYAML==6.0.3'

# Real boot loaders from Debian's binary packages, entered into test stores by sha256.
debs="${BOOTFORGE_TEST_DEBS:-$PWD/target/debs}"
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
  [ -n "$mirror" ] || { echo "ci/setup.sh: no Debian mirror in apt's sources" >&2; exit 1; }
  curl -fsSLo "$ipxe_trixie.part" \
    "${mirror%/}/pool/main/i/ipxe/ipxe_1.21.1+git20250501.dad20602+dfsg-1_all.deb"
  echo "eeaca79dbde0fb86c102bf1d362c6f6a67ed0ddab38b3dd12e1b332339f5dd99  $ipxe_trixie.part" \
    | sha256sum -c --quiet
  mv "$ipxe_trixie.part" "$ipxe_trixie"
fi

# Compiled once into a cache outside the checkout, so later runs on the machine skip them:
# s3s-fs (a real S3 server: SigV4 auth, multipart; about 5 minutes), Garage (the S3 server
# we recommend self-hosting, for the publisher races; about 10 minutes), cargo-fuzz (for
# tests/fuzz, built with the nightly toolchain our machines have).
tools="${BOOTFORGE_TOOLS:-$HOME/.cache/bootforge/tools}"
[ -x "$tools/bin/s3s-fs" ] || cargo install --locked --quiet s3s-fs@0.14.1 --features binary --root "$tools"
[ -x "$tools/bin/garage" ] || cargo install --locked --quiet garage@2.5.0 --root "$tools"
[ -x "$tools/bin/cargo-fuzz" ] || cargo install --locked --quiet cargo-fuzz@0.13.2 --root "$tools"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "ci/setup.sh: the fuzz targets need a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
