#!/usr/bin/env bash
# Benchmark of the builder's overheads on the test fixture (not a test; numbers for README):
# cold build (one container), warm no-op build (cache hit), and plan. Needs the same setup as
# ci/test.sh (root, podman, runc, debootstrap). Usage: bash ci/bench-build.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
export BOOTFORGE_CONTAINER_ARGS="${BOOTFORGE_CONTAINER_ARGS---runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096}"

cargo build --release --locked -q
bf="$PWD/target/release/bootforge"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BOOTFORGE_STORE="$work/store" BOOTFORGE_RECIPES="$PWD/tests/fixtures/recipes"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

t=$(date +%s%N)
"$bf" toolchain build test >/dev/null 2>&1
echo "toolchain build (debootstrap + gcc, make, libc6-dev): $(ms "$t") ms"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cold=() warm=() plan=()
for i in $(seq "$runs"); do
  printf '#!ipxe\necho bench %s\n' "$i" > "$work/embed.$i"
  t=$(date +%s%N); "$bf" build hello --embed "$work/embed.$i" >/dev/null 2>&1; cold+=("$(ms "$t")")
  t=$(date +%s%N); "$bf" build hello --embed "$work/embed.$i" >/dev/null 2>&1; warm+=("$(ms "$t")")
  t=$(date +%s%N); "$bf" plan hello --embed "$work/embed.$i" >/dev/null 2>&1; plan+=("$(ms "$t")")
done
echo "cold fixture build (one container), median of $runs: $(printf '%s\n' "${cold[@]}" | median) ms"
echo "warm no-op build (cache hit, no container), median of $runs: $(printf '%s\n' "${warm[@]}" | median) ms"
echo "plan (cache hit), median of $runs: $(printf '%s\n' "${plan[@]}" | median) ms"
