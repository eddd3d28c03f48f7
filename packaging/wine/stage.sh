#!/usr/bin/env bash
# The Windows test stage (scripts/dev.sh test runs it after the other checks; about 2 minutes, 4 to 5 the first time
# on a machine, when tools.sh builds its tools):
#   1. tools.sh: the ProcessPrng shim, a Wine tree whose winscard reaches pcscd, OpenSC's PKCS#11 DLL (cached);
#   2. the MSI (CARDMAIL_MSI, else built by packaging/windows/build.sh) and the Windows builds of the profile and
#      token tests;
#   3. go test -tags wine ./packaging/wine: a fresh Wine prefix, msiexec /i /qn (and PRESETS=), the installed
#      cardmail.exe: --version, PC/SC failures in words, the GUI under Xvfb (screenshots windows-*.png in
#      bin/pkg/wine/screenshots, or in docs/screenshots with CARDMAIL_UPDATE_SCREENSHOTS=1), readers/--watch/certs/check through Wine's winscard to the bench's pcscd and Dovecot with the
#      virtual card and OpenSC's Windows DLL, module discovery, the PKCS#11 agent's life, the profile tests on
#      drive_c (case-insensitive) and the job-object tests, msiexec /x keeping the presets.
# pcscd must be installed with vpcd (the test takes the bench lock itself). Bounded: every step has a timeout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
start=$(date +%s)
for t in Xvfb:xvfb xwd:x11-apps xdotool:xdotool convert:imagemagick pcscd:pcscd; do
  command -v "${t%%:*}" >/dev/null || { echo "wine stage: ${t%%:*} missing: apt-get install ${t#*:}" >&2; exit 1; }
done
tools="$(timeout 1800 bash packaging/wine/tools.sh)"
echo "wine stage: tools in $tools ($(($(date +%s) - start)) s)"
eval "$(bash packaging/version.sh)"
msi="${CARDMAIL_MSI:-}"
if [ -z "$msi" ]; then
  timeout 1200 bash packaging/windows/build.sh >/dev/null
  msi="$root/dist/cardmail-$VERSION-windows-amd64.msi"
fi
msi="$(cd "$(dirname "$msi")" && pwd)/$(basename "$msi")"
bin="$root/bin/pkg/wine"
mkdir -p "$bin"
# The test suite leaves the tracked screenshots alone; `make screenshots` (or CARDMAIL_UPDATE_SCREENSHOTS=1) updates them.
shots="$bin/screenshots"
[ "${CARDMAIL_UPDATE_SCREENSHOTS:-0}" = 1 ] && shots="$root/docs/screenshots"
mkdir -p "$shots"
GOOS=windows GOARCH=amd64 timeout 900 go test -c -o "$bin/profile.test.exe" ./profile
CGO_ENABLED=1 CC=x86_64-w64-mingw32-gcc GOOS=windows GOARCH=amd64 timeout 900 go test -c -o "$bin/token.test.exe" ./token
echo "wine stage: MSI and Windows test binaries ready ($(($(date +%s) - start)) s)"
CARDMAIL_WINE_TOOLS="$tools" CARDMAIL_WINE_MSI="$msi" CARDMAIL_WINE_TESTBIN="$bin" CARDMAIL_WINE_VERSION="$VERSION" \
  CARDMAIL_WINE_SHOTS="$shots" \
  go test -tags wine -count=1 -v -timeout 20m ./packaging/wine 2>&1 | tee "$bin/stage.log" | grep -E '^\s*(---|===|ok|FAIL|PASS)|wine_test.go:'
status=${PIPESTATUS[0]}
echo "wine stage: $( [ "$status" = 0 ] && echo passed || echo FAILED) in $(($(date +%s) - start)) s (log: $bin/stage.log)"
exit "$status"
