#!/usr/bin/env bash
# make screenshots: PNGs of CardMail's screens in docs/screenshots/.
#   real-*.png      the real app (`cardmail demo`: pcscd, the virtual card) under Xvfb, driven with xdotool: main
#                   window, PIN dialog, folder browser, an open message, failed diagnosis (the second account points
#                   at a plain HTTP listener on 127.0.0.1)
#   headless-*.png  the same code rendered by Fyne's software painter (go test -run TestScreenshots ./gui): main
#                   window with accounts, folder browser with a full mailbox, picker, PIN dialog, every wizard
#                   step, a failed diagnosis, the Bridge panel (headless-bridge-{en,fr}.png) — screens that need a
#                   mail server or many clicks to reach for real;
#                   headless-main-health-{en,fr}.png: the main window with a card whose certificate ends in 12 days
#                   and that has one PIN try left (TestScreenshotsCardHealth)
#   windows-*.png   the Windows build under Wine: taken by the Windows test stage, written here only with
#                   `CARDMAIL_UPDATE_SCREENSHOTS=1 bash packaging/wine/stage.sh` (the test suite leaves them alone)
# Needs xvfb, xdotool, imagemagick, x11-apps (scripts/install-deps.sh). Holds the bench lock while the virtual card
# is in use, like the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/docs/screenshots"
mkdir -p "$out"
bash scripts/install-deps.sh
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
for tool in Xvfb xdotool import xwininfo; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run scripts/install-deps.sh" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/cardmail" .

# A private X server on a free display.
exec 3> "$work/display"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
export DISPLAY=":$(head -1 "$work/display")"

# A demo account whose "server" is a plain HTTP listener on loopback: the TLS step asks for the card PIN, then the
# handshake fails, so Diagnose shows the PIN dialog and then a failed report.
# The demo brings its own account ("demo", working, on its in-process mail server) in a store under
# $XDG_CACHE_HOME/cardmail-demo; a second account pointing at a plain HTTP listener shows a failed diagnosis.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" >"$work/http.log" 2>&1 &
pids+=($!)
# French first (the app's main users): CARDMAIL_LANG=en gives the English set. The click positions below are the
# centres of the buttons in each language's layout at the default window size (900x640, the size
# TestViewsFitDefaultSize checks).
export XDG_CONFIG_HOME="$work/config" XDG_CACHE_HOME="$work/cache" CARDMAIL_LANG="${CARDMAIL_LANG:-fr}"
case "$CARDMAIL_LANG" in
  en*) open_x=310 diag_x=435 pin_title='Card PIN' box_title='Mailbox' ;;
  *)   open_x=397 diag_x=542 pin_title='Code porteur' box_title='Boîte aux lettres' ;;
esac
mkdir -p "$XDG_CACHE_HOME/cardmail-demo/profiles"
cat > "$XDG_CACHE_HOME/cardmail-demo/profiles/wrong-port.json" <<'JSON'
{
 "version": 1,
 "name": "wrong-port",
 "address": "alice.martin@cardmail.test",
 "imap": {"host": "127.0.0.1", "port": PORT, "security": "implicit"},
 "smtp": {"host": "127.0.0.1", "port": PORT, "security": "implicit"},
 "login": "auto",
 "tls_policy": "default"
}
JSON
sed -i "s/PORT/$port/g" "$XDG_CACHE_HOME/cardmail-demo/profiles/wrong-port.json"

shot() { # shot NAME [DELAY [SIZE]]: the screen (windows stack at 0,0), cropped to the window size
  sleep "${2:-1}"
  import -window root -crop "${3:-900x640}+0+0" +repage "$out/real-$1.png"
  echo "wrote docs/screenshots/real-$1.png"
}

# The virtual card's reader is shared with the tests: take the bench lock (bench.LockFileName) meanwhile.
(
  flock -w 600 9 || { echo "bench lock busy" >&2; exit 1; }
  "$work/cardmail" demo >"$work/app.log" 2>&1 &
  app=$!
  trap 'kill $app 2>/dev/null || true' EXIT
  xdotool search --sync --onlyvisible --name '^CardMail$' >/dev/null
  win=$(xdotool search --onlyvisible --name '^CardMail$' | head -1)
  xdotool windowmove "$win" 0 0 windowsize "$win" 900 640
  shot main-window 3
  xdotool mousemove 120 110 click 1            # the demo account
  shot main-window-selected 1
  xdotool mousemove "$open_x" 327 click 1     # Open mailbox: logs in with the card, asks for the PIN
  pw=$(xdotool search --sync --onlyvisible --name "^$pin_title\$" | head -1)
  xdotool windowmove "$pw" 0 0
  shot pin-dialog 2 500x340
  xdotool windowactivate --sync "$pw" 2>/dev/null || true
  xdotool type --delay 50 123456               # the demo card's PIN (bench.DefaultPIN)
  xdotool key Return
  sleep 4
  fw=$(xdotool search --onlyvisible --name "^$box_title — " | head -1 || true)
  [ -n "$fw" ] && xdotool windowmove "$fw" 0 0 windowsize "$fw" 900 560
  shot folder-browser 2 900x560
  xdotool mousemove 650 97 click 1             # the newest message opens under the list
  shot message 2 900x560
  [ -n "$fw" ] && xdotool windowmove "$fw" 1400 0   # no window manager under Xvfb: move it off-screen
  xdotool mousemove 120 190 click 1            # the wrong-port account
  xdotool mousemove "$diag_x" 327 click 1     # Diagnose: fails with wrong_security_mode
  shot diagnosis-failed 6
) 9>"${TMPDIR:-/tmp}/cardmail-bench.lock"

CARDMAIL_SCREENSHOTS="$out" go test -count=1 -run '^(TestScreenshots(CardHealth)?|TestBridgeScreenshots)$' ./gui
ls -1 "$out"
