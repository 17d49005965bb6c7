#!/usr/bin/env bash
# Benchmark of publishing and fetching (not a test; numbers for the README), side by side
# against the aws CLI on a local s3s-fs server:
#   1. upload of a set of artifacts: `bootforge publish` vs `aws s3 cp --recursive`;
#   2. republish of the unchanged set: `bootforge publish` again vs `aws s3 sync` (which skips
#      by size and mtime) and vs `aws s3 cp --recursive` again;
#   3. download of the largest artifact: `bootforge fetch` vs `aws s3 cp`.
# The set is shaped like a nightly: a 200 MiB image, a 64 MiB and a 36 MiB one, and eight
# 1 MiB loaders, all random bytes. Needs s3s-fs (ci/test.sh installs it) and the aws CLI.
#   bash ci/bench-publish.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v aws >/dev/null || { echo "no aws CLI: pip install awscli" >&2; exit 1; }

. ci/bench-lib.sh
bench_start
export BOOTFORGE_STORE="$work/store"
ep=(--endpoint-url "$AWS_ENDPOINT_URL")

# The artifact set, as an unpack-only recipe (no container) so it lands in the store as
# build outputs, exactly as publish finds real ones.
files="$work/files"
mkdir -p "$files" "$work/recipes"
head -c $((200 << 20)) /dev/urandom >"$files/disk.img"
head -c $((64 << 20)) /dev/urandom >"$files/rpi.img"
head -c $((36 << 20)) /dev/urandom >"$files/usb.img"
for i in 1 2 3 4 5 6 7 8; do head -c $((1 << 20)) /dev/urandom >"$files/loader$i.efi"; done
tar -C "$files" --sort=name -cf "$work/set.tar" .
sha=$("$bf" --json cache import "$work/set.tar" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["sha256"])')
outputs=$(cd "$files" && find . -type f -printf '%P\n' | sort | paste -sd, -)
printf 'source:\n  url: https://bench.invalid/set.tar\n  sha256: %s\nepoch: 1700000000\nsteps: []\noutputs: [%s]\n' \
  "$sha" "$outputs" >"$work/recipes/set.yaml"
"$bf" --recipes "$work/recipes" build set >/dev/null 2>&1
total=$(du -sb "$files" | cut -f1)

sync_disk() { sync; }

up_bf=() up_aws=() re_bf=() re_sync=() re_cp=() down_bf=() down_aws=()
big=$(sha256sum "$files/disk.img" | cut -c1-64)
for i in $(seq "$runs"); do
  sync_disk
  t=$(date +%s%N); "$bf" publish --to "s3://bench/bf-$i" --channel nightly >/dev/null 2>&1; up_bf+=("$(ms "$t")")
  sync_disk
  t=$(date +%s%N); aws "${ep[@]}" s3 cp --recursive --quiet "$files" "s3://bench/aws-$i/"; up_aws+=("$(ms "$t")")
  sync_disk
  t=$(date +%s%N); "$bf" publish --to "s3://bench/bf-$i" --channel nightly >/dev/null 2>&1; re_bf+=("$(ms "$t")")
  t=$(date +%s%N); aws "${ep[@]}" s3 sync --quiet "$files" "s3://bench/aws-$i/"; re_sync+=("$(ms "$t")")
  t=$(date +%s%N); aws "${ep[@]}" s3 cp --recursive --quiet "$files" "s3://bench/aws-$i/"; re_cp+=("$(ms "$t")")
  sync_disk
  t=$(date +%s%N); "$bf" fetch disk.img --from "s3://bench/bf-$i" --channel nightly -o "$work/dl-bf.img" >/dev/null 2>&1; down_bf+=("$(ms "$t")")
  t=$(date +%s%N); aws "${ep[@]}" s3 cp --quiet "s3://bench/bf-$i/blobs/sha256/$big" "$work/dl-aws.img"; down_aws+=("$(ms "$t")")
  cmp -s "$work/dl-bf.img" "$work/dl-aws.img" || { echo "downloads differ" >&2; exit 1; }
  rm -rf "$work/s3/bench/bf-$i" "$work/s3/bench/aws-$i" "$work/dl-bf.img" "$work/dl-aws.img"
done

row() {
  local name=$1 a b
  a=$(printf '%s\n' "${@:2:$runs}" | median)
  b=$(printf '%s\n' "${@:$((runs + 2))}" | median)
  printf '| %s | %s ms | %s ms | %s |\n' "$name" "$a" "$b" "$(ratio "$a" "$b")"
}
echo "set: $(( total >> 20 )) MiB in 11 files; median of $runs runs; s3s-fs on 127.0.0.1"
echo "| what | bootforge | aws CLI | ratio |"
echo "|---|---|---|---|"
row "upload the set (publish vs s3 cp --recursive)" "${up_bf[@]}" "${up_aws[@]}"
row "republish unchanged (publish vs s3 sync)" "${re_bf[@]}" "${re_sync[@]}"
row "republish unchanged (publish vs s3 cp --recursive)" "${re_bf[@]}" "${re_cp[@]}"
row "download 200 MiB (fetch vs s3 cp)" "${down_bf[@]}" "${down_aws[@]}"
