#!/usr/bin/env bash
# Every benchmark side by side in one run, printed as one Markdown table: the README's
# "Measured" section is this table and the command that made it. Not a test: nothing here
# asserts a time. Each row is the median of RUNS runs of bootforge and of the reference,
# alternated, and their ratio; the goal column is what the row is meant to reach.
#
#   bash ci/bench.sh [RUNS]                               (default 5)
#   IPXE_REPO=/path/to/ipxe.git bash ci/bench.sh 5        real iPXE v2.0.0 through --mirror
#   BENCH_IPXE_BUILD=1 IPXE_REPO=... bash ci/bench.sh 5   adds whole iPXE builds (~10 min a run)
#
# Needs what ci/test.sh installs (podman, s3s-fs, the aws CLI, mtools, Debian's packages in
# target/debs). Without IPXE_REPO the embed row runs on the fixture's zbin image and the rows
# that need a built iPXE say they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
debs="${BOOTFORGE_TEST_DEBS:-$PWD/target/debs}"
for tool in aws mcopy openssl podman sha256sum xz; do
  command -v "$tool" >/dev/null || { echo "ci/bench.sh: needs $tool (run ci/test.sh once)" >&2; exit 1; }
done

. ci/bench-lib.sh
bench_start
# One store for the whole run, kept between runs (toolchains and iPXE take minutes to build).
export BOOTFORGE_STORE=${BENCH_STORE:-$PWD/target/bench-store}
recipes="$work/recipes"
mkdir -p "$recipes/media"
cp -r tests/fixtures/recipes/. "$recipes/"
cp -r tests/fixtures/hello "$work/hello"
export BOOTFORGE_RECIPES="$recipes"

table=()
# row WHAT BOOTFORGE_MS REFERENCE_MS REFERENCE GOAL
row() { table+=("| $1 | $2 ms | $3 ms ($4) | $(ratio "$2" "$3") | $5 |"); }
# skip WHAT WHY GOAL
skip() { table+=("| $1 | — | — | skipped: $2 | $3 |"); }
med() { printf '%s\n' "$@" | median; }
# timed VAR CMD...: appends the command's wall time (ms) to the array VAR; output dropped.
timed() {
  local -n into=$1
  local t
  t=$(date +%s%N)
  if ! "${@:2}" >"$work/timed.log" 2>&1; then
    echo "ci/bench.sh: this failed: ${*:2}" >&2
    cat "$work/timed.log" >&2
    exit 1
  fi
  into+=("$(ms "$t")")
}
# image_of TOOLCHAIN: the toolchain's image in the engine, imported from its rootfs if
# bootforge has only ever run it from its squashfs.
image_of() {
  local rec="$BOOTFORGE_STORE/toolchains/$1.$(dpkg --print-architecture).json" image rootfs
  image=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['image'])" "$rec")
  rootfs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rootfs'][7:])" "$rec")
  podman image exists "$image" || podman import "$BOOTFORGE_STORE/blobs/sha256/$rootfs" "$image" >/dev/null
  echo "$image"
}

# --- Build: bootforge against the same make run by hand in the same container ----------
echo "building the test toolchain (cached after the first run)..." >&2
"$bf" build hello >/dev/null
# The by-hand runs use the flags bootforge found this host's podman needs (or was given in
# BOOTFORGE_CONTAINER_ARGS), so both sides start the same containers.
mapfile -t cargs < <("$bf" doctor --json | python3 -c \
  'import json,sys; print("\n".join(json.load(sys.stdin)["container_args"]))' | sed '/^$/d')
image=$(image_of test)
by_hand() { # by_hand TREE EMBED_DIR MAKE_ARGS...: podman run ... make, as a user would
  podman run --rm --network=none --pull=never "${cargs[@]}" -v "$1:/src" -v "$2:/embed:ro" \
    -w /src -e SOURCE_DATE_EPOCH=1700000000 -e TZ=UTC -e LC_ALL=C "$image" make "${@:3}"
}
cold=() cold_ref=() warm=() warm_ref=()
for i in $(seq "$runs"); do
  mkdir -p "$work/e$i"
  printf '#!ipxe\necho bench %s %s\n' "$i" "$(date +%s%N)" >"$work/e$i/s.ipxe"
  timed cold "$bf" build hello --embed "$work/e$i/s.ipxe"
  # The copy is part of both: bootforge prepares a fresh tree for every build too.
  t=$(date +%s%N)
  rm -rf "$work/tree" && cp -r tests/fixtures/hello "$work/tree"
  by_hand "$work/tree" "$work/e$i" -j"$(nproc)" EMBED=/embed/s.ipxe GREETING=hello hello netinfo.txt >/dev/null
  cold_ref+=("$(ms "$t")")
  timed warm "$bf" build hello --embed "$work/e$i/s.ipxe"
  timed warm_ref by_hand "$work/tree" "$work/e$i" -j"$(nproc)" EMBED=/embed/s.ipxe GREETING=hello hello netinfo.txt
done
row "fixture build, new embedded script: \`build hello --embed\` vs \`podman run … make\` on a fresh copy" \
  "$(med "${cold[@]}")" "$(med "${cold_ref[@]}")" "make by hand" "≤ 1.05"
row "fixture build, nothing changed: \`build hello\` (cache hit) vs \`podman run … make\` (nothing to do)" \
  "$(med "${warm[@]}")" "$(med "${warm_ref[@]}")" "make by hand" "—"

# --- iPXE: build, embed, four media ---------------------------------------------------------
if [ -n "${IPXE_REPO:-}" ]; then
  mirror=(--mirror "https://github.com/ipxe/ipxe.git=$IPXE_REPO")
  ipxe() { BOOTFORGE_RECIPES="$PWD/recipes" "$bf" "$@"; }
  echo "building iPXE v2.0.0 (cached after the first run)..." >&2
  ipxe build ipxe "${mirror[@]}" >/dev/null
  ipxe_image=$(image_of ipxe)
  embed_cmd=(ipxe embed ipxe -o "$work/emb")
  largest_bin="bin/ipxe.lkrn.bin"
  embed_what="iPXE v2.0.0, 7 binaries"
else
  embed_cmd=("$bf" embed zbin -o "$work/emb")
  largest_bin="hello.bin"
  embed_what="the fixture's zbin image"
fi

if [ -n "${IPXE_REPO:-}" ] && [ -n "${BENCH_IPXE_BUILD:-}" ]; then
  tree="$work/ipxe"
  b=() r=()
  # The recipe's steps as a user would type them: one `podman run … make` per step, each
  # with the outputs its target patterns select, and an embedded script of the same size.
  mapfile -t steps < <(python3 -c "
import fnmatch, shlex, sys, yaml
r = yaml.safe_load(open('recipes/ipxe.yaml'))
for step in r['steps']:
    targets = [o for o in r['outputs'] if any(fnmatch.fnmatch(o, t) for t in step.get('targets', []))]
    argv = []
    for a in step['run']:
        if a == '{targets}':
            argv += targets
        else:
            argv.append(a.replace('{jobs}', sys.argv[1]).replace('{embed}', '/embed/script.ipxe')
                        .replace('{trust}', ''))
    print(shlex.join(argv))" "$(nproc)")
  mkdir -p "$work/ipxe-embed"
  { echo '#!ipxe'; head -c 4000 /dev/zero | tr '\0' '#'; echo; } >"$work/ipxe-embed/script.ipxe"
  echo "timing whole iPXE builds (minutes each)..." >&2
  for i in $(seq "$runs"); do
    timed b ipxe build ipxe "${mirror[@]}" --check
    rm -rf "$tree" && mkdir -p "$tree"
    t=$(date +%s%N)
    git --git-dir="$IPXE_REPO" archive 12798ec29aa8a64d8675c4378b99f5fe28447afb | tar -x -C "$tree"
    for step in "${steps[@]}"; do
      eval "argv=($step)" # shlex-quoted above
      podman run --rm --network=none --pull=never "${cargs[@]}" -v "$tree:/src" \
        -v "$work/ipxe-embed:/embed:ro" -w /src/src -e SOURCE_DATE_EPOCH=1772812135 -e TZ=UTC \
        -e LC_ALL=C "$ipxe_image" "${argv[@]}" >/dev/null
    done
    r+=("$(ms "$t")")
  done
  row "iPXE v2.0.0 build from a clean tree: \`build ipxe\` vs \`podman run … make\` of the same targets" \
    "$(med "${b[@]}")" "$(med "${r[@]}")" "make by hand" "≤ 1.05"
else
  skip "iPXE v2.0.0 build from a clean tree vs \`podman run … make\`" "set IPXE_REPO and BENCH_IPXE_BUILD=1" "≤ 1.05"
fi

# A new chain URL into every built binary: the floor is compressing the largest payload
# with zbin's own settings.
"${embed_cmd[@]}" --set "chain_url=http://boot.example/warm.ipxe" --set message=warm >/dev/null 2>&1
e=() x=()
for i in $(seq "$runs"); do
  url="http://boot.example/bench-$i-$RANDOM.ipxe"
  timed e "${embed_cmd[@]}" --set "chain_url=$url" --set "message=$url"
  bin_dir=$(dirname "$(find "$work/emb" -path "*/$largest_bin" | head -1)")
  timed x xz --format=raw --lzma1=preset=6e,lc=2,lp=0,pb=0 -c "$bin_dir/$(basename "$largest_bin")"
done
row "new chain URL into $embed_what: \`embed\` vs \`xz\` of the largest payload alone ($largest_bin, zbin's LZMA settings)" \
  "$(med "${e[@]}")" "$(med "${x[@]}")" "compression alone" "≤ 1.2"

if [ -n "${IPXE_REPO:-}" ]; then
  # iPXE's own way: relink with make EMBED= in the same container.
  tree="$work/ipxe-relink"
  mkdir -p "$tree"
  git --git-dir="$IPXE_REPO" archive 12798ec29aa8a64d8675c4378b99f5fe28447afb | tar -x -C "$tree"
  relink_targets=(bin/undionly.kpxe bin/ipxe.lkrn bin-x86_64-efi/ipxe.efi bin-x86_64-efi/snponly.efi)
  relink() {
    podman run --rm --network=none --pull=never "${cargs[@]}" -v "$tree:/src" -v "$work:/work:ro" \
      -w /src/src -e SOURCE_DATE_EPOCH=1772812135 "$ipxe_image" make -j"$(nproc)" "$@"
  }
  printf '#!ipxe\necho warm-up\n' >"$work/warm.ipxe"
  relink "EMBED=/work/warm.ipxe" "${relink_targets[@]}" >/dev/null 2>&1
  e=() l=()
  for i in $(seq "$runs"); do
    url="http://boot.example/relink-$i-$RANDOM.ipxe"
    timed e ipxe embed ipxe --set "chain_url=$url" -o "$work/emb"
    printf '#!ipxe\nchain %s\n' "$url" >"$work/r$i.ipxe"
    timed l relink "EMBED=/work/r$i.ipxe" "${relink_targets[@]}"
  done
  row "new chain URL into iPXE: \`embed\` vs iPXE's \`make EMBED=\` relink of 4 targets in the same container" \
    "$(med "${e[@]}")" "$(med "${l[@]}")" "relink" "—"
else
  skip "new chain URL into iPXE: \`embed\` vs \`make EMBED=\` relink" "set IPXE_REPO" "—"
fi

# --- Media ----------------------------------------------------------------------------------
# Stand-in Raspberry Pi firmware (the real UEFI firmware cannot be downloaded here) and a
# stand-in arm64 loader, as the tests use.
stage="$work/fw/RPi4_UEFI_Firmware"
mkdir -p "$stage/overlays"
for f in RPI_EFI.fd start4.elf fixup4.dat bcm2711-rpi-4-b.dtb bcm2711-rpi-400.dtb \
  bcm2711-rpi-cm4.dtb overlays/upstream-pi4.dtbo overlays/miniuart-bt.dtbo config.txt; do
  echo "stand-in $f" >"$stage/$f"
done
echo "MZ stand-in arm64 loader" >"$stage/BOOTAA64.EFI"
tar -C "$work/fw" --sort=name --mtime=@0 -czf "$work/fw.tar.gz" RPi4_UEFI_Firmware
fw_sha=$("$bf" --json cache import "$work/fw.tar.gz" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["sha256"])')
printf 'source:\n  url: https://firmware.example.invalid/RPi4_UEFI_Firmware.tar.gz\n  sha256: %s\n  strip_components: 1\nepoch: 1700000000\nsteps: []\noutputs: [RPI_EFI.fd, start4.elf, fixup4.dat, bcm2711-rpi-4-b.dtb, bcm2711-rpi-400.dtb, bcm2711-rpi-cm4.dtb, overlays/upstream-pi4.dtbo, overlays/miniuart-bt.dtbo, config.txt, BOOTAA64.EFI]\n' \
  "${fw_sha#sha256:}" >"$recipes/rpi-firmware.yaml"
printf 'loaders:\n  bios: none\n  uefi-x64: none\n  uefi-arm64: ipxe\nrecipes:\n  rpi-firmware: ../rpi-firmware.yaml\nfiles:\n  snp-arm64.efi: ../rpi-firmware.yaml:BOOTAA64.EFI\ntemplates: %s/embed\n' \
  "$PWD" >"$recipes/media/rpi.yaml"
url="http://boot.example/rpi.ipxe"
"$bf" package --target rpi-img --profile "$recipes/media/rpi.yaml" --set "chain_url=$url" -o "$work/out" >/dev/null
img="$work/out/bootforge-rpi4.img"
rm -rf "$work/rpi-files" && mkdir -p "$work/rpi-files"
mcopy -s -n -i "$img@@1M" ::/ "$work/rpi-files/" >/dev/null 2>&1
size_mb=$(($(stat -c %s "$img") / 1048576))
sectors=$(((size_mb - 1) * 2048))
printf 'drive x: file="%s" partition=1\n' "$work/m.img" >"$work/mtoolsrc"
mtools_then_hash() {
  rm -f "$work/m.img"
  truncate -s "${size_mb}M" "$work/m.img"
  MTOOLSRC="$work/mtoolsrc" mpartition -I x:
  MTOOLSRC="$work/mtoolsrc" mpartition -c -T 0x0c -b 2048 -l "$sectors" x:
  mformat -i "$work/m.img@@1M" -F -T "$sectors" -v RPI-BOOT ::
  mcopy -s -i "$work/m.img@@1M" "$work/rpi-files/"* ::/
  sha256sum "$work/m.img"
}
p=() h=() m=()
for i in $(seq "$runs"); do
  # A variable no script uses: a new package action, the same image, so what is timed is
  # assembling, hashing, storing and copying out the medium.
  timed p "$bf" package --target rpi-img --profile "$recipes/media/rpi.yaml" --set "chain_url=$url" \
    --set "bench_run=$i-$RANDOM" -o "$work/out"
  timed h openssl dgst -sha256 "$img"
  timed m mtools_then_hash
done
row "\`package --target rpi-img\` (${size_mb} MiB: FAT32, MBR, store, copy out) vs one SHA-256 pass over the image" \
  "$(med "${p[@]}")" "$(med "${h[@]}")" "\`openssl dgst -sha256\`, SHA-NI" "≤ 1.5"
row "\`package --target rpi-img\` vs \`mpartition\` + \`mformat\` + \`mcopy\` + \`sha256sum\` on the same files" \
  "$(med "${p[@]}")" "$(med "${m[@]}")" "mtools" "≤ 0.5"

if [ -n "${IPXE_REPO:-}" ]; then
  # All four media from the iPXE just embedded: ISOLINUX and GRUB's BIOS images from
  # Debian's packages, the stand-in firmware above.
  deb_recipe() { # deb_recipe NAME PACKAGE OUTPUTS
    local sha
    sha=$("$bf" --json cache import "$(ls "$debs/$2"_*.deb | head -1)" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["sha256"])')
    printf 'source:\n  url: https://debian.example.invalid/%s.deb\n  sha256: %s\nepoch: 1700000000\nsteps: []\noutputs: [%s]\n' \
      "$2" "${sha#sha256:}" "$3" >"$recipes/$1.yaml"
  }
  deb_recipe deb-isolinux isolinux "usr/lib/ISOLINUX/isolinux.bin, usr/lib/ISOLINUX/isohdpfx.bin"
  deb_recipe deb-syslinux-common syslinux-common "usr/lib/syslinux/modules/bios/ldlinux.c32"
  deb_recipe deb-grub-pc grub-pc-bin "usr/lib/grub/i386-pc/boot.img"
  grub_sha=$(sed -n 's/^  sha256: //p' "$recipes/deb-grub-pc.yaml")
  printf 'source:\n  url: https://debian.example.invalid/grub-pc-bin.deb\n  sha256: %s\nepoch: 1700000000\ntoolchain: test\nsteps:\n  - run: [mkdir, images]\n  - run: [grub-mkimage, -d, usr/lib/grub/i386-pc, -O, i386-pc, -p, "(hd0,gpt2)/boot/grub", -o, images/core-usb-i386-pc.img, biosdisk, part_gpt, fat, normal, configfile, linux16, echo, test, serial, terminal]\noutputs: [images/core-usb-i386-pc.img, usr/lib/grub/i386-pc/boot.img]\n' \
    "$grub_sha" >"$recipes/grubpc.yaml"
  printf 'loaders:\n  bios: ipxe\n  uefi-x64: ipxe\n  uefi-arm64: ipxe\nrecipes:\n  ipxe: %s/recipes/ipxe.yaml\n  rpi-firmware: ../rpi-firmware.yaml\nfiles:\n  isolinux.bin: ../deb-isolinux.yaml:usr/lib/ISOLINUX/isolinux.bin\n  isohdpfx.bin: ../deb-isolinux.yaml:usr/lib/ISOLINUX/isohdpfx.bin\n  ldlinux.c32: ../deb-syslinux-common.yaml:usr/lib/syslinux/modules/bios/ldlinux.c32\n  grub-boot.img: ../grubpc.yaml:usr/lib/grub/i386-pc/boot.img\n  grub-core-usb.img: ../grubpc.yaml:images/core-usb-i386-pc.img\ntemplates: %s/embed\n' \
    "$PWD" "$PWD" >"$recipes/media/all.yaml"
  all_media() { # all_media URL
    local target
    for target in iso usb-img rpi-img pxe-bundle; do
      ipxe package --target "$target" --profile "$recipes/media/all.yaml" --set "chain_url=$1" \
        "${mirror[@]}" -o "$work/media" || return 1
    done
  }
  all_media "http://boot.example/media-warm.ipxe" >/dev/null 2>&1 \
    || { all_media "http://boot.example/media-warm.ipxe"; exit 1; }
  e=() a=()
  for i in $(seq "$runs"); do
    url="http://boot.example/media-$i-$RANDOM.ipxe"
    timed e ipxe embed ipxe --set "chain_url=$url" -o "$work/emb"
    timed a all_media "$url"
  done
  # Each package after the embed finds it done; what is timed is the four media.
  table+=("| new chain URL → all four media: \`package\` iso + usb-img + rpi-img + pxe-bundle after \`embed\` | $(med "${a[@]}") ms | (embed: $(med "${e[@]}") ms) | — | ≤ 300 ms |")
else
  skip "new chain URL → all four media (\`package\` × 4 after \`embed\`)" "set IPXE_REPO" "≤ 300 ms"
fi

# --- Publish and fetch against the aws CLI, on one s3s-fs server ---------------------------
ep=(--endpoint-url "$AWS_ENDPOINT_URL")
files="$work/files"
mkdir -p "$files" "$work/pub"
head -c $((200 << 20)) /dev/urandom >"$files/disk.img"
head -c $((64 << 20)) /dev/urandom >"$files/rpi.img"
head -c $((36 << 20)) /dev/urandom >"$files/usb.img"
for i in 1 2 3 4 5 6 7 8; do head -c $((1 << 20)) /dev/urandom >"$files/loader$i.efi"; done
tar -C "$files" --sort=name -cf "$work/set.tar" .
sha=$("$bf" --json cache import "$work/set.tar" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["sha256"])')
outputs=$(cd "$files" && find . -type f -printf '%P\n' | sort | paste -sd, -)
printf 'source:\n  url: https://bench.invalid/set.tar\n  sha256: %s\nepoch: 1700000000\nsteps: []\noutputs: [%s]\n' \
  "${sha#sha256:}" "$outputs" >"$work/pub/set.yaml"
pub() { BOOTFORGE_STORE="$work/pubstore" "$bf" "$@"; }
BOOTFORGE_STORE="$work/pubstore" "$bf" cache import "$work/set.tar" >/dev/null
pub --recipes "$work/pub" build set >/dev/null 2>&1
big=$(sha256sum "$files/disk.img" | cut -c1-64)
up=() up_aws=() re=() re_sync=() down=() down_aws=()
for i in $(seq "$runs"); do
  sync
  timed up pub --recipes "$work/pub" publish --to "s3://bench/bf-$i" --channel nightly
  sync
  timed up_aws aws "${ep[@]}" s3 cp --recursive --quiet "$files" "s3://bench/aws-$i/"
  timed re pub --recipes "$work/pub" publish --to "s3://bench/bf-$i" --channel nightly
  timed re_sync aws "${ep[@]}" s3 sync --quiet "$files" "s3://bench/aws-$i/"
  sync
  timed down pub fetch disk.img --from "s3://bench/bf-$i" --channel nightly -o "$work/dl-bf.img"
  timed down_aws aws "${ep[@]}" s3 cp --quiet "s3://bench/bf-$i/blobs/sha256/$big" "$work/dl-aws.img"
  cmp -s "$work/dl-bf.img" "$work/dl-aws.img" || { echo "ci/bench.sh: the downloads differ" >&2; exit 1; }
  rm -rf "$work/s3/bench/bf-$i" "$work/s3/bench/aws-$i" "$work/dl-bf.img" "$work/dl-aws.img"
done
row "upload 308 MiB in 11 files: \`publish\` vs \`aws s3 cp --recursive\`" \
  "$(med "${up[@]}")" "$(med "${up_aws[@]}")" "aws CLI" "< 1"
row "republish unchanged: \`publish\` vs \`aws s3 sync\`" \
  "$(med "${re[@]}")" "$(med "${re_sync[@]}")" "aws CLI" "< 1"
row "download 200 MiB: \`fetch\` (by name, verified) vs \`aws s3 cp\` of the blob" \
  "$(med "${down[@]}")" "$(med "${down_aws[@]}")" "aws CLI" "≤ 0.8"

echo
echo "\`bash ci/bench.sh $runs\`${IPXE_REPO:+ with IPXE_REPO}${BENCH_IPXE_BUILD:+ and BENCH_IPXE_BUILD=1}: release build, median of $runs alternating runs, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| what | bootforge | reference | ratio | goal |"
echo "|---|---|---|---|---|"
printf '%s\n' "${table[@]}"
