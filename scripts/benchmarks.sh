#!/usr/bin/env bash
# Runs every benchmark of the repository once (-benchtime 1x: each benchmark measures a fixed amount of work and its
# baseline in the same run) and writes BENCHMARKS.md: the table of issues 2-4 (CardMail's figure, the baseline, the
# ratio, the target), the other benchmarks, the machine and the date, plus the benchmarks' own printed tables.
# `make bench` calls it through scripts/dev.sh bench, after installing what is missing and starting pcscd.
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
read -r -a pkgs <<< "${BENCH_PKGS:-./...}"
cmd="go test -p 1 -count=1 -v -run '^\$' -bench . -benchtime 1x -timeout 30m ${pkgs[*]}"

status=0
if [ -z "${BENCH_INPUT:-}" ]; then
  echo "benchmarks.sh: $cmd (output in $raw)" >&2
  # The benchmarks print their own tables; keep everything for the report. A failing package must not stop the
  # others nor the report.
  # -v: without it go test cuts each benchmark's log to 10 lines, and the tables are in the logs. -p 1: one
  # package at a time, so that no benchmark measures while another loads the machine.
  go test -p 1 -count=1 -v -run '^$' -bench . -benchtime 1x -timeout 30m "${pkgs[@]}" 2>&1 | tee "$raw" || status=$?
else
  raw="$BENCH_INPUT"
fi

go run ./stress/cmd/benchreport -in "$raw" -out "$out" -go "$(go version)" -cmd "$cmd" || status=$?
echo "benchmarks.sh: report in $out" >&2
exit "$status"
