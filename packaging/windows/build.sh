#!/usr/bin/env bash
# make package-windows: cross-compiles the GUI cardmail.exe with mingw-w64 and builds the MSI with wixl. In dist/:
#   cardmail-<version>-windows-amd64.exe  GUI subsystem (-H windowsgui), icon, version resource and manifest
#                                         (x86_64-w64-mingw32-windres object linked in by the external linker)
#   cardmail-<version>-windows-amd64.msi  packaging/windows/cardmail.wxs (per-machine, Start-menu shortcut, ARP, PRESETS)
# Signing (osslsigncode, Authenticode SHA-256, both files, exe before it goes into the MSI), optional:
#   CARDMAIL_SIGN_CERT=cert.pem CARDMAIL_SIGN_KEY=key.pem [CARDMAIL_SIGN_PASS_FILE=file]  a real certificate; the key's
#                                       passphrase, if any, is read from a file, never from the command line
#   CARDMAIL_TEST_SIGN=1                a throwaway CA and code-signing certificate made by openssl in bin/pkg/windows/
#                                       (CI); `osslsigncode verify -CAfile` must then pass on both files
# No timestamp is requested (no network here). Intermediate files go to bin/pkg/windows (ignored by git).
set -euo pipefail
umask 022
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
eval "$(bash packaging/version.sh)"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
fail() { echo "windows/build.sh: $*" >&2; exit 1; }
for t in x86_64-w64-mingw32-gcc:gcc-mingw-w64-x86-64 x86_64-w64-mingw32-windres:binutils-mingw-w64-x86-64 \
  wixl:wixl msiinfo:msitools osslsigncode:osslsigncode openssl:openssl; do
  command -v "${t%%:*}" >/dev/null || fail "${t%%:*} missing: apt-get install ${t#*:} (scripts/install-deps.sh)"
done
work="$root/bin/pkg/windows"
dist="$root/dist"
rm -rf "$work"
mkdir -p "$work" "$dist"
rm -f "$dist/test-signing-ca.pem"
exe="$dist/cardmail-$VERSION-windows-amd64.exe"
msi="$dist/cardmail-$VERSION-windows-amd64.msi"

echo "== resources (windres)"
IFS=. read -r v1 v2 v3 <<<"$VERSION"
cp assets/icons/cardmail.ico "$work/cardmail.ico"
cp packaging/windows/cardmail.exe.manifest "$work/cardmail.exe.manifest"
sed -e "s|@ICON@|cardmail.ico|" -e "s|@MANIFEST@|cardmail.exe.manifest|" -e "s|@V1@|$v1|g" -e "s|@V2@|$v2|g" \
  -e "s|@V3@|$v3|g" -e "s|@BUILD@|$BUILD|g" -e "s|@VERSION@|$VERSION|g" -e "s|@COMMIT@|$COMMIT|g" \
  -e "s|@HOMEPAGE@|https://github.com/cardmail/cardmail|g" packaging/windows/cardmail.rc.in > "$work/cardmail.rc"
(cd "$work" && x86_64-w64-mingw32-windres -O coff -o rsrc.o cardmail.rc)

echo "== go build cardmail.exe $VERSION ($COMMIT) windows/amd64"
CGO_ENABLED=1 CC=x86_64-w64-mingw32-gcc CXX=x86_64-w64-mingw32-g++ GOOS=windows GOARCH=amd64 \
  GOFLAGS=-buildvcs=false go build -trimpath -ldflags "$LDFLAGS -H windowsgui -linkmode=external -extldflags '$work/rsrc.o'" -o "$work/cardmail.exe" .
# (grep reads captured output: `objdump | grep -q` fails under pipefail when grep exits before objdump has written all)
grep -q '\.rsrc' <<<"$(x86_64-w64-mingw32-objdump -h "$work/cardmail.exe")" || fail "cardmail.exe has no .rsrc section"
grep -q 'Subsystem.*Windows GUI' <<<"$(x86_64-w64-mingw32-objdump -p "$work/cardmail.exe")" || fail "cardmail.exe is not a GUI-subsystem program"

sign() { :; }
ca=""
if [ -n "${CARDMAIL_SIGN_CERT:-}" ] || [ "${CARDMAIL_TEST_SIGN:-}" = 1 ]; then
  if [ -n "${CARDMAIL_SIGN_CERT:-}" ]; then
    cert="$CARDMAIL_SIGN_CERT"; key="${CARDMAIL_SIGN_KEY:?CARDMAIL_SIGN_KEY must name the key of CARDMAIL_SIGN_CERT}"
  else
    echo "== throwaway code-signing certificate (openssl)"
    t="$work/testsign"
    mkdir -p "$t"
    openssl req -x509 -newkey rsa:3072 -nodes -days 2 -subj "/CN=CardMail test signing CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
    openssl req -newkey rsa:3072 -nodes -subj "/CN=CardMail test code signing" -keyout "$t/sign.key" \
      -out "$t/sign.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n' > "$t/ext.cnf"
    openssl x509 -req -in "$t/sign.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 2 \
      -extfile "$t/ext.cnf" -out "$t/sign.pem" 2>/dev/null
    cert="$t/sign.pem"; key="$t/sign.key"; ca="$t/ca.pem"
  fi
  passargs=()
  [ -z "${CARDMAIL_SIGN_PASS_FILE:-}" ] || passargs=(-readpass "$CARDMAIL_SIGN_PASS_FILE")
  # sign FILE: Authenticode SHA-256 signature in place; with the throwaway CA, verify it at once.
  sign() {
    osslsigncode sign -certs "$cert" -key "$key" "${passargs[@]}" -h sha256 -n CardMail \
      -i https://github.com/cardmail/cardmail -in "$1" -out "$1.signed" >/dev/null
    mv "$1.signed" "$1"
    if [ -n "$ca" ]; then
      osslsigncode verify -CAfile "$ca" -in "$1" >"$1.verify.txt" 2>&1 || { cat "$1.verify.txt" >&2; fail "osslsigncode verify $1"; }
    fi
    echo "signed: $(basename "$1")"
  }
fi
sign "$work/cardmail.exe"

echo "== wixl (MSI)"
(cd "$work" && wixl -a x64 -D Version="$VERSION" -D ExePath=cardmail.exe -D IconPath=cardmail.ico \
  -o cardmail.msi "$root/packaging/windows/cardmail.wxs")
sign "$work/cardmail.msi"
cp "$work/cardmail.exe" "$exe"
cp "$work/cardmail.msi" "$msi"
[ -z "$ca" ] || cp "$ca" "$dist/test-signing-ca.pem"
ls -l "$exe" "$msi"
