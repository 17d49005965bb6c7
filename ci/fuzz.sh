#!/usr/bin/env bash
# Runs every cargo-fuzz target of tests/fuzz for SECONDS each (default 60), one after the
# other, and reports the executions of each and in all. New inputs go to a scratch corpus,
# never into the committed seeds; a crash, a leak or an input that runs past 10 s leaves the
# input in tests/fuzz/artifacts/<target>/ and fails the run. Add such an input to
# tests/fuzz/regressions/<target>/ once it is fixed: the test suite replays that folder.
#
#   bash ci/fuzz.sh            # 60 s per target (what ci/test.sh runs)
#   bash ci/fuzz.sh 1800       # longer, for a report
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
export PATH="${BOOTFORGE_TOOLS:-$HOME/.cache/bootforge/tools}/bin:$PATH"
fuzz=(cargo +nightly fuzz)
dir=(--fuzz-dir tests/fuzz)
"${fuzz[@]}" build "${dir[@]}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
total=0
failed=()
printf '%-10s %14s  %s\n' target executions result
for t in $("${fuzz[@]}" list "${dir[@]}"); do
  mkdir -p "$scratch/$t" "tests/fuzz/regressions/$t"
  if "${fuzz[@]}" run "${dir[@]}" "$t" "$scratch/$t" "tests/fuzz/corpus/$t" \
      "tests/fuzz/regressions/$t" -- -max_total_time="$seconds" -timeout=10 \
      -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    result=ok
  else
    result="FAILED (see tests/fuzz/artifacts/$t/)"
    failed+=("$t")
    tail -n 30 "$scratch/$t.log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$t.log" | tail -n 1)
  execs=${execs:-0}
  total=$((total + execs))
  printf '%-10s %14s  %s\n' "$t" "$execs" "$result"
done
printf '%-10s %14s\n' total "$total"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]}" >&2
  exit 1
fi
