#!/usr/bin/env bash
# The nightly release: build the recipes, make the four media, boot the ISO once under QEMU,
# then publish everything to the `nightly` channel of the bucket. One script for every
# scheduler: ci/github/nightly.yml (GitHub Actions) and ci/nomad/bootforge-nightly.nomad.hcl
# (Nomad) both run it.
#
#   bash ci/nightly.sh                 # all phases: build, package, smoke, publish
#   bash ci/nightly.sh build package   # only some phases, in the order given
#
# Run it as root (toolchain images are made with debootstrap and chroot; podman runs the
# builds). Environment:
#   CHAIN_URL              required (package, smoke): the URL the media chain to
#   BOOTFORGE_BUCKET       required (publish): s3://BUCKET/PREFIX
#   BOOTFORGE_PUBLIC_URL   optional: public https:// URL of that prefix (written into
#                          index.json / os_list.json by publish)
#   BOOTFORGE_SIGN_KEY     optional: path of the minisign secret key (from `bootforge keygen`);
#                          without it the channel is published unsigned
#   BOOTFORGE_KEY_PASSWORD optional: the key's password, if `keygen` encrypted it
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (Garage, MinIO),
#   BOOTFORGE_S3_PATH_STYLE=1      read by `bootforge publish` (the standard AWS chain)
#   BOOTFORGE_STORE        optional: the store (default ./cache of the checkout); keep it
#                          between runs so unchanged inputs are not rebuilt
#   BOOTFORGE              optional: a bootforge binary (default: cargo build --release)
#   BOOTFORGE_OUT          optional: where the media are copied (default ./nightly-out)
#   BOOTFORGE_REPORT       optional: publish's --json report (default ./nightly-report.json)
#   BOOT_SMOKE_LOG         optional: serial log of the boot test (default: next to the report)
#   BOOT_SMOKE_TIMEOUT     optional: seconds the ISO has to start iPXE (default 120)
#   BOOTFORGE_CONTAINER_ARGS  optional: extra `podman run` flags (default: the ones bootforge
#                          finds this host needs)
# Relative paths are taken from the directory the script was started in.
set -euo pipefail

die() {
  echo "nightly: error: $*" >&2
  exit 1
}
say() { echo "nightly: $*" >&2; }

abs() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}
# Resolve the caller's relative paths before moving to the checkout.
[ -z "${BOOTFORGE_SIGN_KEY:-}" ] || BOOTFORGE_SIGN_KEY=$(abs "$BOOTFORGE_SIGN_KEY")
if [ -n "${BOOTFORGE_STORE:-}" ]; then
  BOOTFORGE_STORE=$(abs "$BOOTFORGE_STORE")
  export BOOTFORGE_STORE
fi
[ -z "${BOOTFORGE_OUT:-}" ] || BOOTFORGE_OUT=$(abs "$BOOTFORGE_OUT")
[ -z "${BOOTFORGE_REPORT:-}" ] || BOOTFORGE_REPORT=$(abs "$BOOTFORGE_REPORT")
[ -z "${BOOT_SMOKE_LOG:-}" ] || BOOT_SMOKE_LOG=$(abs "$BOOT_SMOKE_LOG")
case ${BOOTFORGE:-} in
  */*) BOOTFORGE=$(abs "$BOOTFORGE") ;;
esac

cd "$(dirname "$0")/.."

# Schedulers hand an unset secret or variable over as an empty string; to bootforge and the
# AWS SDK an empty value is not the same as none (an empty BOOTFORGE_KEY_PASSWORD would be
# tried as the key's password, an empty AWS_ENDPOINT_URL is not a URL), so drop them.
for v in BOOTFORGE_PUBLIC_URL BOOTFORGE_SIGN_KEY BOOTFORGE_KEY_PASSWORD BOOTFORGE_S3_PATH_STYLE \
  AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_ENDPOINT_URL AWS_PROFILE; do
  if [ -z "${!v:-}" ]; then unset "$v"; fi
done

# The recipes the default media profile (recipes/media/default.yaml) draws on: iPXE for every
# platform, SYSLINUX for the ISO's BIOS entry, GRUB's BIOS images for usb-img, the Pi firmware.
recipes=(ipxe syslinux grub rpi-firmware)
targets=(iso usb-img pxe-bundle rpi-img)
out=${BOOTFORGE_OUT:-$PWD/nightly-out}
report=${BOOTFORGE_REPORT:-$PWD/nightly-report.json}
smoke_log=${BOOT_SMOKE_LOG:-$(dirname "$report")/boot-smoke-serial.log}
smoke_timeout=${BOOT_SMOKE_TIMEOUT:-120}

phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(all)
want_build=0 want_package=0 want_smoke=0 want_publish=0
for p in "${phases[@]}"; do
  case $p in
    all) want_build=1 want_package=1 want_smoke=1 want_publish=1 ;;
    build) want_build=1 ;;
    package) want_package=1 ;;
    smoke) want_smoke=1 ;;
    publish) want_publish=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown phase '$p' (phases: all, build, package, smoke, publish)" ;;
  esac
done

# Check the environment before spending half an hour building.
missing=()
if (( want_package || want_smoke )); then
  [ -n "${CHAIN_URL:-}" ] || missing+=("CHAIN_URL (the URL the media chain to, e.g. https://boot.example/boot.ipxe)")
fi
if (( want_publish )); then
  if [ -z "${BOOTFORGE_BUCKET:-}" ]; then
    missing+=("BOOTFORGE_BUCKET (where to publish, s3://BUCKET/PREFIX)")
  else
    [[ $BOOTFORGE_BUCKET == s3://?* ]] || die "BOOTFORGE_BUCKET must look like s3://BUCKET/PREFIX, got '$BOOTFORGE_BUCKET'"
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do echo "nightly: error: $m is not set" >&2; done
  exit 1
fi
if (( want_package || want_smoke )); then
  [[ $CHAIN_URL == http://?* || $CHAIN_URL == https://?* || $CHAIN_URL == tftp://?* ]] \
    || die "CHAIN_URL must be an http://, https:// or tftp:// URL, got '$CHAIN_URL'"
fi
public_url=${BOOTFORGE_PUBLIC_URL:-}
sign_key=${BOOTFORGE_SIGN_KEY:-}
if (( want_publish )); then
  if [ -n "$public_url" ] && [[ $public_url != http://?* && $public_url != https://?* ]]; then
    die "BOOTFORGE_PUBLIC_URL must be an http(s):// URL, got '$public_url'"
  fi
  if [ -n "$sign_key" ]; then
    { [ -f "$sign_key" ] && [ -r "$sign_key" ]; } || die "BOOTFORGE_SIGN_KEY=$sign_key is not a readable file"
    [ -s "$sign_key" ] || die "BOOTFORGE_SIGN_KEY=$sign_key is empty (is the secret set?)"
  else
    say "warning: BOOTFORGE_SIGN_KEY is not set; publishing without a signature"
  fi
  if [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
    say "warning: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not both set; relying on the rest of the AWS credential chain"
  fi
fi
if (( want_build || want_package )) && [ "$(id -u)" -ne 0 ]; then
  say "warning: not root; a toolchain that must be (re)built needs root for debootstrap and chroot"
fi

if [ -n "${BOOTFORGE:-}" ]; then
  [ -x "$BOOTFORGE" ] || command -v "$BOOTFORGE" >/dev/null || die "BOOTFORGE=$BOOTFORGE is not an executable"
  bf=$BOOTFORGE
else
  command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain, or set BOOTFORGE to a bootforge binary"
  say "building bootforge (cargo build --release --locked)"
  cargo build --release --locked
  target_dir=${CARGO_TARGET_DIR:-target}
  bf=$(abs "$target_dir")/release/bootforge
fi
say "using $bf ($("$bf" --version)), store ${BOOTFORGE_STORE:-$PWD/cache}"

if (( want_build )); then
  # No `bootforge toolchain build` here: `build` makes a recipe's toolchain itself when it
  # was never built, its spec changed, or its rootfs is missing from the store, whereas
  # `toolchain build` always runs debootstrap again, and a rootfs with any newer Debian
  # package gets a new digest, which changes every action key and rebuilds everything.
  say "plan (what will be rebuilt and why)"
  "$bf" plan "${recipes[@]}" || true
  say "build ${recipes[*]}"
  "$bf" build "${recipes[@]}"
fi

if (( want_package )); then
  mkdir -p "$out"
  # Only the media this phase writes, so a stale one cannot pass for tonight's.
  rm -f "$out/bootforge.iso" "$out/bootforge-usb.img" "$out/pxe-bundle.tar.gz" "$out/bootforge-rpi4.img"
  for t in "${targets[@]}"; do
    say "package --target $t"
    "$bf" package --target "$t" --set "chain_url=$CHAIN_URL" -o "$out"
  done
  ls -l "$out" >&2
fi

if (( want_smoke )); then
  iso="$out/bootforge.iso"
  [ -f "$iso" ] || die "$iso is missing: run the package phase first"
  say "boot test of $iso (SeaBIOS, up to ${smoke_timeout}s)"
  mkdir -p "$(dirname "$smoke_log")"
  BOOT_SMOKE_CHAIN_URL=$CHAIN_URL BOOT_SMOKE_LOG=$smoke_log \
    bash ci/boot-smoke.sh "$iso" "$smoke_timeout"
fi

if (( want_publish )); then
  "$bf" publish --help >/dev/null 2>&1 \
    || die "$bf has no \`publish\` command (a build of bootforge without S3 publishing)"
  args=(publish --to "$BOOTFORGE_BUCKET" --channel nightly)
  [ -z "$sign_key" ] || args+=(--sign "$sign_key")
  [ -z "$public_url" ] || args+=(--public-url "$public_url")
  say "publish to $BOOTFORGE_BUCKET, channel nightly${sign_key:+, signed}${public_url:+, public URL $public_url}" \
    "(region ${AWS_REGION:-default}${AWS_ENDPOINT_URL:+, endpoint $AWS_ENDPOINT_URL}${BOOTFORGE_S3_PATH_STYLE:+, BOOTFORGE_S3_PATH_STYLE=$BOOTFORGE_S3_PATH_STYLE})"
  mkdir -p "$(dirname "$report")"
  # --json goes to stdout only; logs and progress stay on stderr.
  "$bf" --json "${args[@]}" >"$report.tmp"
  mv "$report.tmp" "$report"
  say "published; report in $report"
  cat "$report"
fi
