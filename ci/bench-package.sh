#!/usr/bin/env bash
# Benchmark of the packager (not a test; numbers for README). Side by side in one run:
#   1. `bootforge embed ipxe` (patch the placeholder, re-run zbin) against iPXE's own
#      `make EMBED=` relink of the same targets, in the same toolchain container;
#   2. `bootforge package --target iso` against `xorriso -as mkisofs` on the same files;
#   3. `bootforge package --target rpi-img` against the mtools pipeline (mpartition, mformat,
#      mcopy) on the same files.
# Needs what ci/test.sh needs, plus a local clone of iPXE's repository:
#   IPXE_REPO=/path/to/ipxe.git [SYSLINUX_RECIPE=recipe-or-path] \
#   [RPI_FIRMWARE_RECIPE=recipe-or-path] bash ci/bench-package.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
: "${IPXE_REPO:?set IPXE_REPO to a local clone of https://github.com/ipxe/ipxe.git}"
export BOOTFORGE_CONTAINER_ARGS="${BOOTFORGE_CONTAINER_ARGS---runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096}"
read -r -a cargs <<<"$BOOTFORGE_CONTAINER_ARGS"

cargo build --release --locked -q
bf="$PWD/target/release/bootforge"
store=${BENCH_STORE:-$PWD/target/bench-store}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BOOTFORGE_STORE="$store"
mirror=(--mirror "https://github.com/ipxe/ipxe.git=$IPXE_REPO")

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "building ipxe once (cached after the first run)..." >&2
"$bf" build ipxe "${mirror[@]}" >/dev/null

# 1. embed against make EMBED= relink.
embed_t=() relink_t=()
image=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['image'])" "$store/toolchains/ipxe.$(dpkg --print-architecture).json")
key=$("$bf" --json plan ipxe | python3 -c "import json,sys; print(json.load(sys.stdin)['plans'][0]['action_key'])")
# A built tree to relink in: iPXE's sources at the pinned commit, built once.
tree="$work/ipxe"
mkdir -p "$tree"
git --git-dir="$IPXE_REPO" archive 12798ec29aa8a64d8675c4378b99f5fe28447afb | tar -x -C "$tree"
targets=(bin/undionly.kpxe bin/ipxe.lkrn bin-x86_64-efi/ipxe.efi bin-x86_64-efi/snponly.efi)
run_make() {
  podman run --rm --network=none --pull=never "${cargs[@]}" -v "$tree:/src" -v "$work:/work:ro" \
    -w /src/src -e SOURCE_DATE_EPOCH=1772812135 "$image" make -j"$(nproc)" "$@" >/dev/null 2>&1
}
printf '#!ipxe\necho warm-up\n' > "$work/warm.ipxe"
run_make "EMBED=/work/warm.ipxe" "${targets[@]}"
for i in $(seq "$runs"); do
  url="http://boot.example/bench-$i-$RANDOM.ipxe"
  t=$(date +%s%N); "$bf" embed ipxe --set "chain_url=$url" >/dev/null 2>&1; embed_t+=("$(ms "$t")")
  printf '#!ipxe\nchain %s\n' "$url" > "$work/s$i.ipxe"
  t=$(date +%s%N); run_make "EMBED=/work/s$i.ipxe" "${targets[@]}"; relink_t+=("$(ms "$t")")
done
e=$(printf '%s\n' "${embed_t[@]}" | median); r=$(printf '%s\n' "${relink_t[@]}" | median)
echo "embed (new URL into built iPXE, 5 binaries + 2 zbin runs), median of $runs: $e ms"
echo "make EMBED= relink of 4 targets in the same container, median of $runs: $r ms"
echo "ratio relink/embed: $(python3 -c "print(round($r/$e, 1))")"
echo "(action $key)" >&2

# 2. package --target iso against xorriso -as mkisofs on the same files.
iso_t=() xorriso_t=()
printf 'loaders:\n  bios: ipxe\n  uefi-x64: ipxe\n  uefi-arm64: ipxe\nrecipes:\n  syslinux: %s\n' \
  "${SYSLINUX_RECIPE:-syslinux}" > "$work/profile.yaml"
printf 'templates: %s/embed\n' "$PWD" >> "$work/profile.yaml"
# The loaders are embedded once; each run then differs only in a variable no script uses,
# so what is timed is assembling and storing the medium, as xorriso's part is.
url="http://boot.example/iso-$RANDOM.ipxe"
"$bf" package --target iso --profile "$work/profile.yaml" --set "chain_url=$url" >/dev/null 2>&1
for i in $(seq "$runs"); do
  t=$(date +%s%N)
  "$bf" package --target iso --profile "$work/profile.yaml" --set "chain_url=$url" \
    --set "bench_run=$i-$RANDOM" -o "$work/out" >/dev/null 2>&1
  iso_t+=("$(ms "$t")")
done
# The same tree for xorriso: unpack what bootforge put on the disc (ISO tree and ESP image).
rm -rf "$work/tree" && mkdir -p "$work/tree"
xorriso -osirrox on -indev "$work/out/bootforge.iso" -extract / "$work/tree" >/dev/null 2>&1
chmod -R u+w "$work/tree"
esp_start=$(sfdisk -d "$work/out/bootforge.iso" | awk -F'[=,]' '/C12A7328/ {print $2+0}')
esp_size=$(sfdisk -d "$work/out/bootforge.iso" | awk -F'[=,]' '/C12A7328/ {print $4+0}')
dd if="$work/out/bootforge.iso" of="$work/tree/efi.img" bs=512 skip="$esp_start" count="$esp_size" status=none
cp "$store/blobs/sha256/$("$bf" --json build "${SYSLINUX_RECIPE:-syslinux}" | python3 -c "import json,sys; print([o['sha256'] for o in json.load(sys.stdin)['builds'][0]['outputs'] if o['name'].endswith('isohdpfx.bin')][0][7:])")" "$work/isohdpfx.bin"
for i in $(seq "$runs"); do
  t=$(date +%s%N)
  xorriso -as mkisofs -quiet -o "$work/x.iso" -R -J -V BOOTFORGE \
    -isohybrid-mbr "$work/isohdpfx.bin" -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table \
    -eltorito-alt-boot -e efi.img -no-emul-boot -isohybrid-gpt-basdat "$work/tree" 2>/dev/null
  xorriso_t+=("$(ms "$t")")
done
p=$(printf '%s\n' "${iso_t[@]}" | median); x=$(printf '%s\n' "${xorriso_t[@]}" | median)
echo "package --target iso (ESP + ISO + store + copy out; loaders already embedded), median of $runs: $p ms"
echo "xorriso -as mkisofs on the same tree, median of $runs: $x ms"
echo "ratio package/xorriso: $(python3 -c "print(round($p/$x, 2))")"

# 3. package --target rpi-img against mpartition + mformat + mcopy on the same files.
rpi_t=() mtools_t=()
printf 'loaders:\n  bios: none\n  uefi-x64: none\n  uefi-arm64: ipxe\nrecipes:\n  rpi-firmware: %s\ntemplates: %s/embed\n' \
  "${RPI_FIRMWARE_RECIPE:-rpi-firmware}" "$PWD" > "$work/rpi.yaml"
url="http://boot.example/rpi-$RANDOM.ipxe"
"$bf" package --target rpi-img --profile "$work/rpi.yaml" --set "chain_url=$url" >/dev/null 2>&1
for i in $(seq "$runs"); do
  t=$(date +%s%N)
  "$bf" package --target rpi-img --profile "$work/rpi.yaml" --set "chain_url=$url" \
    --set "bench_run=$i-$RANDOM" -o "$work/out" >/dev/null 2>&1
  rpi_t+=("$(ms "$t")")
done
img="$work/out/bootforge-rpi4.img"
rm -rf "$work/rpi-files" && mkdir -p "$work/rpi-files"
mcopy -s -n -i "$img@@1M" ::/ "$work/rpi-files/" >/dev/null 2>&1
size_mb=$(( $(stat -c %s "$img") / 1048576 ))
sectors=$(( (size_mb - 1) * 2048 ))
printf 'drive x: file="%s" partition=1\n' "$work/m.img" > "$work/mtoolsrc"
for i in $(seq "$runs"); do
  rm -f "$work/m.img"
  t=$(date +%s%N)
  truncate -s "${size_mb}M" "$work/m.img"
  MTOOLSRC="$work/mtoolsrc" mpartition -I x: 2>/dev/null
  MTOOLSRC="$work/mtoolsrc" mpartition -c -T 0x0c -b 2048 -l "$sectors" x: 2>/dev/null
  mformat -i "$work/m.img@@1M" -F -T "$sectors" -v RPI-BOOT ::
  mcopy -s -i "$work/m.img@@1M" "$work/rpi-files/"* ::/
  sync "$work/m.img"
  mtools_t+=("$(ms "$t")")
done
p=$(printf '%s\n' "${rpi_t[@]}" | median); m=$(printf '%s\n' "${mtools_t[@]}" | median)
echo "package --target rpi-img (FAT32 + MBR + store + copy out; loaders already embedded), median of $runs: $p ms"
echo "mpartition + mformat + mcopy + sync on the same files, median of $runs: $m ms"
echo "ratio package/mtools: $(python3 -c "print(round($p/$m, 2))")"
