#!/usr/bin/env bash
# Runs every Go fuzz target of the repository (func FuzzXxx in a *_test.go file) for a bounded time, one after the
# other, and fails if any of them fails. CI calls it; a failing input is written by Go to
# <package>/testdata/fuzz/FuzzXxx/ — commit it and add the case to the package's unit table ("// Cases found by
# fuzzing:").
#
#   scripts/fuzz.sh                 every target, FUZZTIME each (default 10s)
#   scripts/fuzz.sh --list          print the targets ("package FuzzName") and exit
#   scripts/fuzz.sh ./mail FuzzX    only the targets whose package and name match (extended regexps)
#   FUZZTIME=1m scripts/fuzz.sh     longer runs (any -fuzztime value: 30s, 2m, 10000x)
#   scripts/fuzz.sh --classify LOG N  print the verdict on a failed run's output LOG that wrote N inputs (tests use it)
#   FUZZ_EXPORT=1 scripts/fuzz.sh   afterwards, copy the corpus Go found interesting from the build cache into
#                                   <package>/testdata/fuzz/FuzzXxx/ when the whole export stays under 200 KB
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

# classify LOG NEW: the verdict on a `go test -fuzz` run that exited non-zero, from its output (LOG) and the number of
# failing inputs it wrote under testdata/fuzz (NEW). Prints "crash" or "engine-timeout".
#   - a new failing input, a seed-corpus failure, a panic, a build error, or any other failure text: crash (a real
#     failure: it fails CI);
#   - only "context deadline exceeded" as the failure, and no new input: the fuzzing engine's own time-out at the
#     end of -fuzztime (Go's coordinator race, golang/go#75804, fixed in Go 1.27; it also hits while the engine
#     minimises an input that only widened coverage). Nothing failed in the code under test.
classify() {
  local log=$1 new=$2
  if [ "$new" -gt 0 ]; then echo crash; return; fi
  # The failure report of the target: the lines after "--- FAIL:", without the FAIL/exit summary lines.
  local report
  report=$(awk '/^--- FAIL:/{f=1; next} f && !/^(FAIL|exit status|ok )/ {print}' "$log" | sed -e 's/^[[:space:]]*//' | grep -v '^$' || true)
  if [ "$report" = "context deadline exceeded" ] && ! grep -qE 'panic:|failure while testing seed corpus|Failing input written|build failed|\[build failed\]' "$log"; then
    echo engine-timeout
    return
  fi
  echo crash
}

if [ "${1:-}" = "--classify" ]; then
  classify "$2" "$3"
  exit 0
fi

FUZZTIME="${FUZZTIME:-10s}"
pkg_filter="${1:-.}"
name_filter="${2:-.}"
[ "${1:-}" = "--list" ] && pkg_filter="." && name_filter="."

# Targets, "package-dir FuzzName", sorted. Skips vendored and generated trees.
targets=$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . \
  | grep -v -e '^./dist/' -e '^./vendor/' -e '/testdata/' \
  | sed -E 's#^(.*)/[^/]*_test.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' | sort -u)

if [ "${1:-}" = "--list" ]; then
  echo "$targets"
  exit 0
fi

selected=$(echo "$targets" | awk -v p="$pkg_filter" -v n="$name_filter" '$1 ~ p && $2 ~ n')
if [ -z "$selected" ]; then
  echo "fuzz.sh: no fuzz target matches package '$pkg_filter' and name '$name_filter'" >&2
  exit 2
fi

count=$(echo "$selected" | wc -l)
echo "fuzz.sh: $count targets, $FUZZTIME each"
failed=()
timeouts=()
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r dir name; do
  echo "== $dir $name"
  corpus="$dir/testdata/fuzz/$name"
  before=$( (find "$corpus" -type f 2>/dev/null || true) | wc -l)
  # -run '^$' skips the unit tests; the seed corpus still runs first as part of fuzzing.
  if go test -count=1 -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$dir" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    continue
  fi
  after=$( (find "$corpus" -type f 2>/dev/null || true) | wc -l)
  case $(classify "$log" $((after - before))) in
    engine-timeout)
      echo "fuzz.sh: $dir $name: the fuzzing engine timed out at the end of -fuzztime (golang/go#75804); no input failed, not a failure"
      timeouts+=("$dir $name")
      ;;
    *) failed+=("$dir $name") ;;
  esac
done <<< "$selected"
echo "fuzz.sh: $count targets in $(( $(date +%s) - start ))s; engine time-outs (not failures): ${#timeouts[@]}"

if [ "${FUZZ_EXPORT:-0}" = 1 ]; then
  cache="$(go env GOCACHE)/fuzz/$(go list -m)"
  total=0
  while read -r dir name; do
    src="$cache/${dir#./}/$name"
    [ -d "$src" ] || continue
    size=$(du -sk "$src" | cut -f1)
    total=$((total + size))
  done <<< "$selected"
  if [ "$total" -ge 200 ]; then
    echo "fuzz.sh: corpus is ${total} KB (limit 200 KB): not exported" >&2
  else
    while read -r dir name; do
      src="$cache/${dir#./}/$name"
      [ -d "$src" ] || continue
      mkdir -p "$dir/testdata/fuzz/$name"
      cp -n "$src"/* "$dir/testdata/fuzz/$name/" 2>/dev/null || true
    done <<< "$selected"
    echo "fuzz.sh: exported ${total} KB of corpus into <package>/testdata/fuzz/"
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  echo "fuzz.sh: the failing inputs are in <package>/testdata/fuzz/<FuzzName>/; reproduce with go test -run '<FuzzName>/<file>' <package>" >&2
  exit 1
fi
echo "fuzz.sh: all $count targets passed"
