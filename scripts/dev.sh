#!/usr/bin/env bash
# CardMail's developer entry point: the README's two commands and CI go through here.
#   scripts/dev.sh demo    install what is missing, start pcscd, run the GUI with the built-in virtual card
#   scripts/dev.sh test    install what is missing, start pcscd, run the checks and the whole test suite
#   scripts/dev.sh bench   run the benchmarks, print their tables and write BENCHMARKS.md
# Works on a fresh Debian/Ubuntu machine: missing Debian packages are installed (with sudo when not root); a missing
# or old Go is replaced by Debian's golang-go, which fetches the toolchain go.mod names through the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

ensure_go() {
  export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
  if ! command -v go >/dev/null 2>&1; then
    echo "installing Debian's golang-go (it downloads the Go version go.mod asks for through the module proxy)" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go ca-certificates git >/dev/null
  fi
  export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
  # One set of build flags for tests, tools and the Linux package (PIE, trimmed paths, as the .deb ships it), so
  # that every package is compiled once: a cold CI run compiles Fyne once instead of twice.
  export GOFLAGS="${GOFLAGS:--buildvcs=false -buildmode=pie -trimpath}"
}

ensure_tools() {
  # staticcheck, pinned, built from the module proxy into ./bin
  if [ ! -x "$root/bin/staticcheck" ]; then
    GOBIN="$root/bin" go install honnef.co/go/tools/cmd/staticcheck@v0.7.0
  fi
}

start_pcscd() {
  # Under the machine-wide bench lock that bench.Lock takes (tests stop and restart pcscd while they hold it); -o: the
  # pcscd started here must not inherit the lock's file descriptor, or it would hold the lock for ever.
  $SUDO mkdir -p /run/pcscd
  # Detached, without --auto-exit (nothing would restart it); the bench restarts it itself when a test kills it.
  flock -o -w 900 "${TMPDIR:-/tmp}/cardmail-bench.lock" $SUDO sh -c '
    if [ -S /run/pcscd/pcscd.comm ] && pgrep -x pcscd >/dev/null 2>&1; then exit 0; fi
    setsid pcscd --foreground >/tmp/cardmail-pcscd.log 2>&1 < /dev/null &
    for _ in $(seq 50); do [ -S /run/pcscd/pcscd.comm ] && exit 0; sleep 0.1; done
    echo "pcscd did not start; see /tmp/cardmail-pcscd.log" >&2
    exit 1' || exit 1
}

cmd="${1:-}"
case "$cmd" in
  demo)
    bash scripts/install-deps.sh
    ensure_go
    start_pcscd
    go build -o bin/cardmail .
    exec ./bin/cardmail demo
    ;;
  test)
    bash scripts/install-deps.sh
    ensure_go
    ensure_tools
    start_pcscd
    echo "== gofmt"; out=$(gofmt -l .); [ -z "$out" ] || { echo "gofmt would change: $out"; exit 1; }
    echo "== go vet"; go vet ./...
    echo "== staticcheck"; ./bin/staticcheck ./...
    echo "== go test"
    go test -count=1 -timeout 25m ./...
    echo "== fuzz (bounded)"; FUZZTIME="${FUZZTIME:-5s}" bash scripts/fuzz.sh
    echo "== packaging"; bash packaging/smoke-linux.sh; bash packaging/check-msi.sh
    echo "== windows (the MSI under Wine)"
    eval "$(bash packaging/version.sh)"
    CARDMAIL_MSI="dist/cardmail-$VERSION-windows-amd64.msi" timeout 1800 bash packaging/wine/stage.sh
    ;;
  bench)
    bash scripts/install-deps.sh
    ensure_go
    start_pcscd
    bash scripts/benchmarks.sh
    ;;
  *)
    echo "usage: scripts/dev.sh demo|test|bench" >&2
    exit 2
    ;;
esac
