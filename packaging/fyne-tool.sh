#!/usr/bin/env bash
# Builds the pinned `fyne` packaging tool (fyne.io/tools, version in packaging/tools/go.mod) into bin/fyne and prints
# its path. `go install fyne.io/tools/cmd/fyne@v1.7.2` fails through this project's module proxy, so the tool is
# built from packaging/tools, a module of its own whose go.sum pins every dependency (the app's go.mod is not
# involved). Rebuilds only when bin/fyne is missing or reports another version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
want="$(awk '$1 == "require" && $2 == "fyne.io/tools" { print $3 } $1 == "fyne.io/tools" { print $2 }' "$root/packaging/tools/go.mod" | head -n1)"
[ -n "$want" ] || { echo "fyne-tool.sh: fyne.io/tools not required in packaging/tools/go.mod" >&2; exit 1; }
bin="$root/bin/fyne"
if [ ! -x "$bin" ] || ! grep -q "cli version: $want\$" <<<"$("$bin" version 2>&1)"; then
  echo "building fyne $want from packaging/tools" >&2
  (cd "$root/packaging/tools" && GOWORK=off GOFLAGS=-mod=readonly go build -o "$bin" fyne.io/tools/cmd/fyne)
fi
echo "$bin"
