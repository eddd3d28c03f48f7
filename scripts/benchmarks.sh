#!/usr/bin/env bash
# Runs every benchmark of the repository and writes BENCHMARKS.md: the table of issues 2-4 and 12 (CardMail's figure,
# the baseline measured in the same run, the ratio, the target), the other benchmarks, the machine and the date, plus
# the benchmarks' own printed tables. `make bench` calls it through scripts/dev.sh bench, after installing what is
# missing and starting pcscd.
#
# Two passes, one package at a time (-p 1, so that no benchmark measures while another loads the machine):
#   - the packages of the key table (their benchmarks repeat their work and baselines inside, interleaved, and report
#     medians with their run counts), once: -benchtime 1x -count 1;
#   - every other package, -benchtime 1x -count $BENCH_COUNT (default 7): the report shows the median of the runs.
#
#   scripts/benchmarks.sh                 all packages, report in BENCHMARKS.md
#   BENCH_PKGS="./session ./mail" scripts/benchmarks.sh   a subset (the report marks the rest as not measured)
#   BENCH_OUT=/tmp/b.md scripts/benchmarks.sh             another report path
#   BENCH_INPUT=/tmp/cardmail-bench.txt scripts/benchmarks.sh   only regenerate the report from a saved run
#
# Exit status: non-zero when a benchmark package failed or a key measure is missing (the report is written anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

out="${BENCH_OUT:-BENCHMARKS.md}"
raw="${BENCH_RAW:-${TMPDIR:-/tmp}/cardmail-bench.txt}"
count="${BENCH_COUNT:-7}"
# The packages whose benchmarks take their own medians (keep in step with stress/cmd/benchreport's key rows).
inner=(./session ./mail ./diagnosis ./gui ./bridge)
read -r -a wanted <<< "${BENCH_PKGS:-./...}"

# Split the wanted packages (import paths, patterns expanded) into the two passes.
mapfile -t innerPaths < <(go list "${inner[@]}")
mapfile -t wantedPaths < <(go list "${wanted[@]}")
once=() repeated=()
for p in "${wantedPaths[@]}"; do
  if printf '%s\n' "${innerPaths[@]}" | grep -qxF "$p"; then once+=("$p"); else repeated+=("$p"); fi
done
flags=(-p 1 -v -run '^$' -bench . -benchtime 1x -timeout 30m)
mod=$(go list -m)
rel() { for p in "$@"; do if [ "$p" = "$mod" ]; then printf ' .'; else printf ' ./%s' "${p#"$mod"/}"; fi; done; }
cmd="go test ${flags[*]} -count=1$(rel "${once[@]}"); go test ${flags[*]} -count=$count$(rel "${repeated[@]}")"

status=0
if [ -z "${BENCH_INPUT:-}" ]; then
  echo "benchmarks.sh: $cmd (output in $raw)" >&2
  : > "$raw"
  # The benchmarks print their own tables; keep everything for the report. A failing package must not stop the
  # others nor the report. -v: without it go test cuts each benchmark's log to 10 lines, and the tables are in the
  # logs.
  if [ ${#once[@]} -gt 0 ]; then
    go test "${flags[@]}" -count=1 "${once[@]}" 2>&1 | tee -a "$raw" || status=$?
  fi
  if [ ${#repeated[@]} -gt 0 ]; then
    go test "${flags[@]}" -count="$count" "${repeated[@]}" 2>&1 | tee -a "$raw" || status=$?
  fi
else
  raw="$BENCH_INPUT"
fi

go run ./stress/cmd/benchreport -in "$raw" -out "$out" -go "$(go version)" -cmd "$cmd" || status=$?
echo "benchmarks.sh: report in $out" >&2
exit "$status"
