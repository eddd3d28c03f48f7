#!/usr/bin/env bash
# The one place the release number comes from. Prints shell assignments to eval:
#   eval "$(bash packaging/version.sh)"
# sets VERSION (FyneApp.toml [Details] Version), BUILD ([Details] Build), APP_ID ([Details] ID), COMMIT
# (`git rev-parse --short HEAD`, "unknown" outside a git checkout) and LDFLAGS (-X flags for package version, plus -s -w).
# Fails when FyneApp.toml lacks Version, Build or ID.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
toml="$root/FyneApp.toml"

# details KEY prints the value of KEY in FyneApp.toml's [Details] table, without quotes.
details() {
  awk -v key="$1" '
    /^[[:space:]]*\[/ { in_details = ($0 ~ /^[[:space:]]*\[Details\][[:space:]]*$/); next }
    in_details {
      line = $0
      sub(/^[[:space:]]+/, "", line)
      if (index(line, key) == 1) {
        rest = substr(line, length(key) + 1)
        if (rest ~ /^[[:space:]]*=/) {
          sub(/^[[:space:]]*=[[:space:]]*/, "", rest)
          sub(/[[:space:]]*(#.*)?$/, "", rest)
          gsub(/"/, "", rest)
          print rest
          exit
        }
      }
    }' "$toml"
}

version="$(details Version)"
build="$(details Build)"
app_id="$(details ID)"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "version.sh: FyneApp.toml [Details] Version missing or not x.y.z: '$version'" >&2; exit 1; }
[[ "$build" =~ ^[0-9]+$ ]] || { echo "version.sh: FyneApp.toml [Details] Build missing or not an integer: '$build'" >&2; exit 1; }
[ -n "$app_id" ] || { echo "version.sh: FyneApp.toml [Details] ID missing" >&2; exit 1; }
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
pkg=github.com/cardmail/cardmail/version
printf 'VERSION=%q\nBUILD=%q\nAPP_ID=%q\nCOMMIT=%q\nLDFLAGS=%q\n' "$version" "$build" "$app_id" "$commit" \
  "-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit"
