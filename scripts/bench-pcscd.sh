#!/usr/bin/env bash
# Controls the machine-wide pcscd of the hardware-free bench, the way bench.EnsurePCSCD/StopPCSCD do.
#   scripts/bench-pcscd.sh start    start `pcscd --foreground` detached (log: $TMPDIR/cardmail-pcscd.log) unless it answers
#   scripts/bench-pcscd.sh stop     SIGKILL every pcscd and remove its stale pid file and socket
#   scripts/bench-pcscd.sh status   list the readers (opensc-tool -l)
# Never uses --auto-exit (nothing would restart it) nor --apdu (it would log PINs).
set -euo pipefail
log="${TMPDIR:-/tmp}/cardmail-pcscd.log"
answers() { opensc-tool -l 2>/dev/null | grep -q "Virtual PCD 00 00"; }
case "${1:-status}" in
start)
  command -v pcscd >/dev/null || [ -x /usr/sbin/pcscd ] || { echo "pcscd missing: run scripts/install-deps.sh" >&2; exit 1; }
  [ -f /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || { echo "vpcd missing: apt-get install vsmartcard-vpcd" >&2; exit 1; }
  if answers; then echo "pcscd already answers"; exit 0; fi
  if ! pgrep -x pcscd >/dev/null; then
    rm -f /run/pcscd/pcscd.pid /run/pcscd/pcscd.comm
    PATH="$PATH:/usr/sbin" setsid pcscd --foreground >>"$log" 2>&1 < /dev/null &
  fi
  for _ in $(seq 100); do answers && { echo "pcscd up (log $log)"; exit 0; }; sleep 0.1; done
  echo "pcscd did not answer within 10 s (log $log)" >&2; exit 1 ;;
stop)
  for pid in $(pgrep -x pcscd || true); do kill -KILL "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0
    for pid in $(pgrep -x pcscd || true); do
      [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || alive=1
    done
    [ "$alive" = 0 ] && { rm -f /run/pcscd/pcscd.pid /run/pcscd/pcscd.comm; echo "pcscd stopped"; exit 0; }
    sleep 0.1
  done
  echo "pcscd still alive after 10 s" >&2; exit 1 ;;
status) opensc-tool -l ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
