#!/usr/bin/env bash
# Smoke test of the Linux .deb on this machine (root, or a user with sudo). Bounded in time; fails loudly.
#   1. builds dist/cardmail_<version>_amd64.deb (packaging/linux/build.sh) unless CARDMAIL_DEB names one;
#   2. installs it with `apt-get install ./file.deb` (its dependencies come from Debian) and checks the files,
#      `cardmail --version` and the example preset;
#   3. under the machine-wide bench lock (flock on $TMPDIR/cardmail-bench.lock, the one bench.Lock takes):
#      `cardmail readers --json` against the running pcscd, with no card and then with the bench's virtual card
#      (internal/bench/cmd/vcard) in the first vpcd reader; then the GUI under Xvfb: it must stay up, and an xwd screenshot
#      (converted to PNG) must not be blank;
#   4. `apt-get remove --purge cardmail` and checks that /usr/bin/cardmail and /etc/cardmail are gone.
# pcscd must be running with the vpcd driver (scripts/dev.sh test starts it). Screenshot: bin/pkg/smoke-linux.png.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
work="$root/bin/pkg/smoke"
rm -rf "$work"
mkdir -p "$work"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "smoke-linux: FAIL: $*" >&2; exit 1; }
step() { echo "== smoke-linux: $*"; }
need() { command -v "$1" >/dev/null || fail "$1 missing: apt-get install $2 (scripts/install-deps.sh lists it)"; }
need Xvfb xvfb; need xwd x11-apps; need flock util-linux; need python3 python3
[ -x /usr/bin/convert ] || fail "ImageMagick missing: apt-get install imagemagick"
[ -S /run/pcscd/pcscd.comm ] || fail "pcscd is not running (no /run/pcscd/pcscd.comm): start it as scripts/dev.sh does"

eval "$(bash packaging/version.sh)"
deb="${CARDMAIL_DEB:-}"
if [ -z "$deb" ]; then
  step "building the .deb"
  timeout 900 bash packaging/linux/build.sh >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; fail "packaging/linux/build.sh"; }
  deb="$root/dist/cardmail_${VERSION}_amd64.deb"
fi
[ -f "$deb" ] || fail "no package at $deb"

step "install $(basename "$deb")"
if grep -q "ok installed" <<<"$(dpkg-query -W -f='${Status}' cardmail 2>/dev/null)"; then
  $SUDO env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get remove --purge -y -qq cardmail >/dev/null
fi
deb_abs="$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$deb_abs" >"$work/apt-install.log" 2>&1 \
  || { tail -30 "$work/apt-install.log" >&2; fail "apt-get install $deb_abs"; }
for f in /usr/bin/cardmail /usr/share/applications/fr.cardmail.desktop.desktop \
  /usr/share/icons/hicolor/48x48/apps/cardmail.png /usr/share/icons/hicolor/scalable/apps/cardmail.svg \
  /etc/cardmail/profiles/example.json.sample; do
  [ -e "$f" ] || fail "$f not installed"
done
grep -q /etc/cardmail/profiles/example.json.sample <<<"$(dpkg-query -W -f='${Conffiles}\n' cardmail)" || fail "example preset is not a conffile"
got="$(timeout 10 /usr/bin/cardmail --version)"
case "$got" in "cardmail $VERSION "*) ;; *) fail "cardmail --version says '$got', want 'cardmail $VERSION (...)'" ;; esac
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); assert p["version"]==1 and p["name"]=="example", p' \
  /etc/cardmail/profiles/example.json.sample || fail "example preset is not the expected JSON"
echo "installed: $got"

# readers_json FILE: runs `cardmail readers --json` into FILE (10 s at most).
readers_json() { timeout 10 /usr/bin/cardmail readers --json >"$1" 2>"$1.err" || { cat "$1.err" >&2; fail "cardmail readers --json exited $?"; }; }
# card_present FILE: exit 0 when the first reader reports a card.
card_present() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["readers"] and d["readers"][0]["card_present"] else 1)' "$1"; }

exec 9>"${TMPDIR:-/tmp}/cardmail-bench.lock"
step "waiting for the bench lock"
flock -w 900 9 || fail "bench lock ${TMPDIR:-/tmp}/cardmail-bench.lock still held after 900 s"

step "cardmail readers --json (pcscd)"
readers_json "$work/readers.json"
python3 - "$work/readers.json" <<'PY' || fail "readers --json: $(cat "$work/readers.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["service_running"] is True, "service_running is not true"
assert len(d["readers"]) >= 1, "no reader: is vsmartcard-vpcd installed and pcscd started after it?"
PY
cat "$work/readers.json"

step "virtual card in the first reader"
timeout 120 go build -o "$work/vcard" ./internal/bench/cmd/vcard || fail "go build ./internal/bench/cmd/vcard"
"$work/vcard" --reader-addr 127.0.0.1:35963 --identity alice --dir "$tmp/pki" >"$work/vcard.log" 2>&1 &
pids+=($!)
ok=""
for _ in $(seq 40); do # pcscd polls every 400 ms: 20 s at most
  readers_json "$work/readers-card.json"
  if card_present "$work/readers-card.json"; then ok=1; break; fi
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/vcard.log" >&2; fail "vcard exited"; }
  sleep 0.5
done
[ -n "$ok" ] || fail "readers --json never showed the virtual card: $(cat "$work/readers-card.json")"
cat "$work/readers-card.json"

step "GUI under Xvfb"
disp=""
for n in $(seq 90 120); do
  [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] || { disp=":$n"; break; }
done
[ -n "$disp" ] || fail "no free X display between :90 and :120"
Xvfb "$disp" -screen 0 1024x768x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X${disp#:}" ] && break; sleep 0.1; done
[ -e "/tmp/.X11-unix/X${disp#:}" ] || fail "Xvfb $disp did not start: $(cat "$work/xvfb.log")"
mkdir -p "$tmp/home"
HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/home/.config" DISPLAY="$disp" CARDMAIL_LANG=en \
  /usr/bin/cardmail >"$work/gui.log" 2>&1 &
gui=$!
pids+=("$gui")
sleep 6
kill -0 "$gui" 2>/dev/null || { cat "$work/gui.log" >&2; fail "the GUI exited within 6 s"; }
DISPLAY="$disp" timeout 20 xwd -root -silent >"$work/screen.xwd" || fail "xwd"
/usr/bin/convert "xwd:$work/screen.xwd" "png:$root/bin/pkg/smoke-linux.png" || fail "convert xwd to png"
colours="$(/usr/bin/convert "$root/bin/pkg/smoke-linux.png" -format %k info:)"
[ "$colours" -ge 16 ] || fail "screenshot looks blank ($colours colours): bin/pkg/smoke-linux.png"
echo "screenshot: bin/pkg/smoke-linux.png ($colours colours)"
kill "$gui" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$gui" 2>/dev/null || break; sleep 0.1; done
kill -9 "$gui" 2>/dev/null || true
kill "${pids[@]}" 2>/dev/null || true
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
flock -u 9

step "apt-get remove --purge cardmail"
$SUDO env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get remove --purge -y -qq cardmail >"$work/apt-remove.log" 2>&1 \
  || { tail -30 "$work/apt-remove.log" >&2; fail "apt-get remove --purge cardmail"; }
[ ! -e /usr/bin/cardmail ] || fail "/usr/bin/cardmail still there after purge"
[ ! -e /etc/cardmail/profiles/example.json.sample ] || fail "example preset still there after purge"
[ ! -e /usr/share/applications/fr.cardmail.desktop.desktop ] || fail "desktop entry still there after purge"
echo "smoke-linux: OK"
