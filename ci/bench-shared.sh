#!/usr/bin/env bash
# Benchmark of the shared store (not a test; ratios for the README), side by side in one run,
# against a private s3s-fs server on 127.0.0.1:
#   1. machine B, an empty store, taking a build from the shared store, against machine A
#      building it cold and pushing it: the fixture `hello` (RUNS times, each with a new
#      embedded script), and with IPXE_REPO=/path/to/ipxe (a clone with v2.0.0) the real
#      iPXE recipe through --mirror (once: a cold build takes minutes);
#   2. a toolchain image on a second machine: `toolchain pull` (the rootfs from the bucket,
#      verified, imported into podman) against `toolchain build` (debootstrap), for the
#      test spec and for iPXE's, and `podman import` of the same rootfs tarball against
#      the pull (what a pull that unpacks would cost; one that mounts the squashfs does not);
#   3. N shards on N processes against one process, for a set of fixture recipes
#      (`build --all --shard I/N` at once against `build --all`), each into a fresh prefix.
# Needs what ci/test.sh needs (root, podman, runc, debootstrap, a Debian mirror, s3s-fs).
#   bash ci/bench-shared.sh [RUNS] [SHARDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shards=${2:-3}

. ci/bench-lib.sh
bench_start
# Copies of the recipes: `toolchain build` rewrites a spec's .lock beside it.
cp -r tests/fixtures "$work/fixtures"
cp -r recipes "$work/recipes"
cp -r embed "$work/embed" # the iPXE recipe's template, ../embed from its directory
fixtures="$work/fixtures/recipes"

# Runs bootforge as machine $1 (its own store) against the shared prefix $2.
on() {
  local m=$1 prefix=$2
  shift 2
  BOOTFORGE_STORE="$work/machine-$m" "$bf" --remote "s3://bench/$prefix" "$@"
}
image_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["image"])'; }
rows=()
row() { rows+=("| $1 | $2 ms | $3 ms | $(ratio "$2" "$3") |"); }

# 2. Toolchains first: every later step uses the test image.
for spec in test ipxe; do
  dir=$fixtures
  [ "$spec" = test ] || dir="$work/recipes"
  rm -rf "$work/machine-a"
  t=$(date +%s%N)
  image=$(on a tc --json --recipes "$dir" toolchain build "$spec" 2>/dev/null | image_of)
  built=$(ms "$t")
  podman rmi -f "$image" >/dev/null
  rm -rf "$work/machine-b"
  t=$(date +%s%N)
  on b tc --recipes "$dir" toolchain pull "$spec" >/dev/null 2>&1
  pulled=$(ms "$t")
  ls "$work/machine-b/toolchains/$spec".*.json >/dev/null || { echo "toolchain pull $spec recorded nothing" >&2; exit 1; }
  # A pull mounts the squashfs where it can: the engine gets no image.
  podman image exists "$image" && mode=import || mode=mount
  row "toolchain \`$spec\` on a second machine: \`toolchain build\` (debootstrap) vs \`toolchain pull\` (bucket, $mode)" "$built" "$pulled"
  # What a pull would cost if it unpacked: podman importing the same rootfs tarball.
  podman rmi -f "$image" >/dev/null 2>&1 || true
  rootfs="$work/machine-b/blobs/sha256/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs"][7:])' "$(ls "$work/machine-b/toolchains/$spec".*.json)")"
  t=$(date +%s%N)
  podman import "$rootfs" "$image" >/dev/null 2>&1
  imported=$(ms "$t")
  podman rmi -f "$image" >/dev/null
  row "toolchain \`$spec\`: \`podman import\` of the rootfs tarball ($(du -m "$rootfs" | cut -f1) MB) vs \`toolchain pull\`" "$imported" "$pulled"
done

# 1. A builds cold and pushes; B, an empty store, takes it.
cold=() warm=()
for i in $(seq "$runs"); do
  printf '#!ipxe\necho bench %s\n' "$i" >"$work/embed.$i"
  rm -rf "$work/machine-a" "$work/machine-b"
  on a tc --recipes "$fixtures" toolchain pull test >/dev/null 2>&1
  t=$(date +%s%N); on a tc --recipes "$fixtures" build hello --embed "$work/embed.$i" >/dev/null 2>&1; cold+=("$(ms "$t")")
  t=$(date +%s%N); on b tc --recipes "$fixtures" build hello --embed "$work/embed.$i" >/dev/null 2>&1; warm+=("$(ms "$t")")
done
row "fixture \`build hello\`: A cold (one container, pushed) vs B empty, from the bucket (median of $runs)" \
  "$(printf '%s\n' "${cold[@]}" | median)" "$(printf '%s\n' "${warm[@]}" | median)"
if [ -n "${IPXE_REPO:-}" ]; then
  mirror=(--mirror "https://github.com/ipxe/ipxe.git=$IPXE_REPO")
  rm -rf "$work/machine-a" "$work/machine-b"
  on a tc --recipes "$work/recipes" toolchain pull ipxe >/dev/null 2>&1
  t=$(date +%s%N); on a tc --recipes "$work/recipes" "${mirror[@]}" build ipxe >/dev/null 2>&1; a=$(ms "$t")
  t=$(date +%s%N); on b tc --recipes "$work/recipes" build ipxe >/dev/null 2>&1; b=$(ms "$t")
  row "real iPXE v2.0.0 \`build ipxe\`: A cold (make, pushed) vs B empty, from the bucket" "$a" "$b"
fi

# 3. One process against N at once, each over a fresh prefix and fresh stores (holding the
#    toolchain, pulled first): 2N recipes (the fixture with other greetings), two a shard.
set_dir="$work/set"
mkdir -p "$set_dir/toolchains"
cp "$fixtures/toolchains/test.yaml" "$set_dir/toolchains/"
for n in $(seq $((2 * shards))); do
  sed -e "s|path: ../hello|path: $fixtures/../hello|" -e "s|embed: ../hello|embed: $fixtures/../hello|" \
    -e "s|GREETING: hello|GREETING: hello-$n|" "$fixtures/hello.yaml" >"$set_dir/hello$n.yaml"
done
one=() many=()
for i in $(seq "$runs"); do
  rm -rf "$work"/machine-*
  on 0 tc --recipes "$set_dir" toolchain pull test >/dev/null 2>&1
  t=$(date +%s%N); on 0 "one-$i" --recipes "$set_dir" build --all >/dev/null 2>&1; one+=("$(ms "$t")")
  for s in $(seq "$shards"); do on "$s" tc --recipes "$set_dir" toolchain pull test >/dev/null 2>&1; done
  t=$(date +%s%N)
  pids=()
  for s in $(seq "$shards"); do
    on "$s" "many-$i" --recipes "$set_dir" build --all --shard "$s/$shards" >/dev/null 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  many+=("$(ms "$t")")
done
row "$((2 * shards)) fixture recipes: one \`build --all\` vs $shards \`--shard I/$shards\` processes at once (median of $runs, $(nproc) CPUs)" \
  "$(printf '%s\n' "${one[@]}" | median)" "$(printf '%s\n' "${many[@]}" | median)"

echo "s3s-fs on 127.0.0.1; release build"
echo "| what | A | B | A / B |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
