#!/usr/bin/env bash
# Builds, once, what the Windows test stage needs beside Debian 12's Wine 8.0, into a cache directory, and prints
# that directory on stdout:
#   bcryptprimitives.dll  ProcessPrng for Go programs (shim/bcryptprimitives.c), test tooling only
#   wine/lib/wine/wine64  Debian's Wine tree (symbolic links) with a winscard that reaches pcscd: Debian 12's Wine
#                         8.0 ships winscard.dll as stubs without a Unix side (every call answers
#                         SCARD_F_INTERNAL_ERROR). Wine's own PC/SC bridge (dlls/winscard: winscard.c + unixlib.c,
#                         forwarding to libpcsclite) came in later Wine; it is taken from Debian's Wine 10 source
#                         package (trixie) and built against Wine 8.0's headers (Debian's source package of the
#                         installed version) and libpcsclite: winscard.dll with mingw-w64 + winegcc, winscard.so
#                         with gcc. Wine 8 looks for builtin DLLs in its own directory first, so the stage runs a
#                         copy of the loader and ntdll.so in a tree of links where only winscard differs.
#   opensc-pkcs11.dll     OpenSC (Debian 12's source package and patches) cross-built with mingw-w64 as one
#                         self-contained DLL, like the one OpenSC's Windows installer puts under %ProgramFiles%:
#                         a real Windows PKCS#11 module that talks PC/SC. Built without OpenSSL (none for mingw in
#                         Debian): the PIV card's RSA PKCS#1 v1.5 signatures are done by the card.
# Sources come from Debian's archive with apt-get source, through a private apt configuration (the system's
# sources.list is not touched). The cache key is the hash of this script, the shim and the Debian versions of the
# tools used, so a warm run costs nothing; a cold one takes a few minutes (OpenSC's build).
#   CARDMAIL_WINE_CACHE  cache root (default $XDG_CACHE_HOME/cardmail-wine, else ~/.cache/cardmail-wine)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${CARDMAIL_WINE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/cardmail-wine}"
fail() { echo "wine/tools.sh: $*" >&2; exit 1; }
for t in x86_64-w64-mingw32-gcc:gcc-mingw-w64-x86-64 /usr/lib/wine/wine64:wine64 /usr/lib/wine/winegcc:wine64-tools \
  autoreconf:autoconf automake:automake libtoolize:libtool dpkg-source:dpkg-dev pkg-config:pkg-config; do
  command -v "${t%%:*}" >/dev/null || fail "${t%%:*} missing: apt-get install ${t#*:} (scripts/install-deps.sh)"
done
[ -f /usr/include/wine/wine/windows/winscard.h ] || fail "Wine headers missing: apt-get install libwine-dev"
[ -f /usr/include/PCSC/winscard.h ] || fail "pcsc-lite headers missing: apt-get install libpcsclite-dev"

ver() { dpkg-query -W -f='${Version}' "$1"; }
wine_version="$(ver wine64)"
key="$( { cat "$0" "$here/shim/bcryptprimitives.c"; for p in wine64 libwine-dev wine64-tools gcc-mingw-w64-x86-64 libpcsclite-dev; do echo "$p $(ver "$p")"; done; } | sha256sum | cut -c1-16)"
out="$cache/$key"
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
exec 8>"$cache/lock" # one build at a time; a second caller waits and then finds it done
flock -w 1800 8 || fail "$cache/lock held for 30 minutes"
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
step() { echo "== wine/tools.sh: $*" >&2; }
run() { "$@" >>"$log" 2>&1 || { tail -40 "$log" >&2; fail "failed: $*"; }; }

step "sources (apt-get source: wine $wine_version and wine/trixie, opensc/bookworm)"
apt="$cache/apt"
mkdir -p "$apt/lists/partial"
cat >"$apt/sources.list" <<LIST
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian trixie main
LIST
aptopts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent -o "Dir::State::Lists=$apt/lists"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
run timeout 300 apt-get "${aptopts[@]}" update
mkdir -p "$work/src"
(cd "$work/src" && run timeout 600 apt-get "${aptopts[@]}" source --download-only "wine=$wine_version" wine/trixie opensc/bookworm)
ls "$work/src" >"$work/sources.txt"

step "winscard with a PC/SC bridge"
w10="$(ls "$work"/src/wine_10*.orig.tar.xz | head -1)"
w8="$(ls "$work"/src/wine_"${wine_version%%-*}".orig.tar.xz 2>/dev/null || ls "$work"/src/wine_8*.orig.tar.xz | head -1)"
[ -f "$w10" ] && [ -f "$w8" ] || fail "wine source packages not downloaded: $(cat "$work/sources.txt")"
mkdir -p "$work/w10" "$work/w8"
run tar xJf "$w10" -C "$work/w10" --strip-components=1 --wildcards '*/dlls/winscard/*'
run tar xJf "$w8" -C "$work/w8" --strip-components=1 --wildcards '*/include/*'
ws="$work/w10/dlls/winscard"
# Wine 10.0's map_states_inA/inW pass every reader state to pcsc-lite as SCARD_STATE_UNAWARE (they leave
# current_state zero) and map_states_out then hands the caller back a zero dwCurrentState: SCardGetStatusChange never
# times out and always reports a change. OpenSC's slot detection then loops on "card changed" forever (measured:
# 677,000 calls in 10 s, C_Initialize never returns). Pass the caller's current state through.
perl -0pi -e 's/(\(char \*\*\)&dst\[i\]\.reader \) < 0\)\n\s+return SCARD_E_NO_MEMORY;\n)/$1        dst[i].current_state = src[i].dwCurrentState;\n/g' "$ws/winscard.c"
[ "$(grep -c 'dst\[i\]\.current_state = src\[i\]\.dwCurrentState;' "$ws/winscard.c")" = 2 ] ||
  fail "Wine's winscard.c changed: review the current_state fix in $0"
inc=(-I"$ws" -I/usr/include/wine/wine/windows -I/usr/include/wine -I"$work/w8/include")
winelib=/usr/lib/x86_64-linux-gnu/wine
mkdir -p "$work/winscard"
(
  cd "$work/winscard"
  export PATH="/usr/lib/wine:$PATH"
  run x86_64-w64-mingw32-gcc -c -o winscard.o "$ws/winscard.c" -D__WINESRC__ -D_UCRT -nostdinc \
    -I/usr/include/wine/wine/msvcrt "${inc[@]}" -O2 -fno-strict-aliasing -Wall -Wno-unused
  run wrc --nostdinc -I/usr/include/wine/wine/windows -I"$work/w8/include" --target=x86_64-w64-mingw32 -o rsrc.res "$ws/rsrc.rc"
  run winegcc -b x86_64-w64-mingw32 -o winscard.dll -Wl,--wine-builtin -shared "$ws/winscard.spec" winscard.o rsrc.res \
    -L"$winelib/x86_64-windows" -lwinecrt0 -lucrtbase -lkernel32 -lntdll
  run gcc -c -o unixlib.o "$ws/unixlib.c" -D__WINESRC__ -DWINE_UNIX_LIB "${inc[@]}" -fPIC -fasynchronous-unwind-tables -O2 -Wall -Wno-unused
  run gcc -shared -Wl,-Bsymbolic -Wl,-soname,winscard.so -o winscard.so unixlib.o -lpcsclite
)
step "Wine tree with that winscard"
tree="$work/out/wine"
mkdir -p "$tree/lib/wine" "$tree/lib/x86_64-linux-gnu/wine/x86_64-unix" "$tree/lib/x86_64-linux-gnu/wine/x86_64-windows" "$tree/share"
cp /usr/lib/wine/wine64 "$tree/lib/wine/"   # a copy: Wine finds its tree from the loader's real path
ln -s /usr/lib/wine/wineserver64 "$tree/lib/wine/wineserver"
for d in x86_64-unix x86_64-windows; do
  for f in "$winelib/$d"/*; do ln -s "$f" "$tree/lib/x86_64-linux-gnu/wine/$d/"; done
done
rm "$tree/lib/x86_64-linux-gnu/wine/x86_64-unix/ntdll.so" "$tree/lib/x86_64-linux-gnu/wine/x86_64-windows/winscard.dll"
cp "$winelib/x86_64-unix/ntdll.so" "$tree/lib/x86_64-linux-gnu/wine/x86_64-unix/"
cp "$work/winscard/winscard.so" "$tree/lib/x86_64-linux-gnu/wine/x86_64-unix/"
cp "$work/winscard/winscard.dll" "$tree/lib/x86_64-linux-gnu/wine/x86_64-windows/"
ln -s /usr/share/wine "$tree/share/wine"

step "OpenSC for Windows (mingw-w64; a few minutes)"
dsc="$(ls "$work"/src/opensc_*.dsc | head -1)"
run dpkg-source --no-check -x "$dsc" "$work/opensc"
(
  cd "$work/opensc"
  run autoreconf -fi
  run ./configure --host=x86_64-w64-mingw32 --disable-shared --enable-static --disable-openssl --disable-openpace \
    --disable-readline --disable-zlib --disable-notify --disable-man --disable-doc --disable-cmocka --disable-strict \
    --disable-dependency-tracking --disable-autostart-items --disable-sm
  for d in common scconf ui pkcs15init sm libopensc pkcs11; do run make -j"$(nproc)" -C "src/$d"; done
  { echo "LIBRARY opensc-pkcs11.dll"; echo EXPORTS; cat src/pkcs11/pkcs11.exports; } >pkcs11.def
  run x86_64-w64-mingw32-gcc -shared -static-libgcc -s -o "$work/out/opensc-pkcs11.dll" pkcs11.def \
    -Wl,--whole-archive src/pkcs11/.libs/libopensc-pkcs11.a -Wl,--no-whole-archive -Wl,--start-group \
    src/libopensc/.libs/libopensc.a src/pkcs15init/.libs/libpkcs15init.a src/scconf/.libs/libscconf.a \
    src/sm/.libs/libsmiso.a src/sm/.libs/libsmeac.a src/common/.libs/libscdl.a src/common/.libs/libcompat.a \
    src/ui/.libs/libstrings.a src/ui/.libs/libnotify.a -Wl,--end-group -lshlwapi -lws2_32 -ladvapi32
)

step "ProcessPrng shim"
run x86_64-w64-mingw32-gcc -shared -O2 -s -o "$work/out/bcryptprimitives.dll" "$here/shim/bcryptprimitives.c" -ladvapi32

cp "$work/sources.txt" "$work/out/sources.txt"
rm -rf "$out"
mv "$work/out" "$out"
date -u +%FT%TZ >"$out/done"
echo "$out"
