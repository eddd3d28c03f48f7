#!/usr/bin/env bash
# Checks the Windows installer's tables with msitools (the Wine stage, packaging/wine/stage.sh, installs and runs it).
#   bash packaging/check-msi.sh            builds it first (CARDMAIL_TEST_SIGN=1 make package-windows's script)
#   bash packaging/check-msi.sh FILE.msi   checks FILE.msi (and verifies its signature if dist/test-signing-ca.pem exists)
# Asserts the tables (File, Component, Directory, Shortcut, Registry, Property with the ARP entries, CustomAction and
# its place in InstallExecuteSequence), the summary (x64), then extracts the files with msiextract and checks
# cardmail.exe (PE32+ GUI subsystem, .rsrc with the version string, same bytes as dist/'s .exe) and the signatures.
# Fails loudly on the first mismatch; bounded in time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fail() { echo "check-msi: FAIL: $*" >&2; exit 1; }
for t in msiinfo:msitools msiextract:msitools osslsigncode:osslsigncode x86_64-w64-mingw32-objdump:binutils-mingw-w64-x86-64; do
  command -v "${t%%:*}" >/dev/null || fail "${t%%:*} missing: apt-get install ${t#*:} (scripts/install-deps.sh)"
done
eval "$(bash packaging/version.sh)"
if [ $# -eq 0 ]; then
  CARDMAIL_TEST_SIGN=1 timeout 1200 bash packaging/windows/build.sh
  msi="$root/dist/cardmail-$VERSION-windows-amd64.msi"
else
  msi="$1"
fi
[ -f "$msi" ] || fail "no MSI at $msi"
msi="$(cd "$(dirname "$msi")" && pwd)/$(basename "$msi")"
exe="$root/dist/cardmail-$VERSION-windows-amd64.exe"
ca="$root/dist/test-signing-ca.pem"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# table NAME: the rows of table NAME, tab-separated, without msiinfo's three header lines. Run in $tmp: msiinfo
# writes a table's binary streams (the Icon table's icon) into a folder named after the table in the current one.
table() { (cd "$tmp" && timeout 30 msiinfo export "$msi" "$1") | tr -d '\r' | sed 1,3d; }
# has_row NAME REGEX: table NAME has a row matching the extended REGEX (tabs written as \t).
has_row() { grep -qP "$2" <<<"$(table "$1")" || { table "$1" >&2; fail "table $1 has no row matching /$2/"; }; }

tables="$(timeout 30 msiinfo tables "$msi")"
for t in File Component Directory Feature FeatureComponents Shortcut Registry Property Icon CustomAction InstallExecuteSequence CreateFolder Media; do
  grep -qx "$t" <<<"$tables" || fail "no $t table"
done
echo "tables: $(tr '\n' ' ' <<<"$tables")"

suminfo="$(timeout 30 msiinfo suminfo "$msi")"
grep -q '^Template: x64;1033$' <<<"$suminfo" || fail "summary template is not x64;1033: $suminfo"

# Files and where they go.
has_row File '^cardmail\.exe\tMainExecutable\tcardmail\.exe\t[0-9]+\t'
has_row Component '^MainExecutable\t\{[0-9A-F-]+\}\tINSTALLDIR\t256\t\tcardmail\.exe$'
has_row Directory '^INSTALLDIR\tProgramFiles64Folder\tCardMail$'
has_row Directory '^CardMailData\tCommonAppDataFolder\tCardMail$'
has_row Directory '^ProfilesDir\tCardMailData\tprofiles$'
has_row CreateFolder '^ProfilesDir\tProfilesFolder$'
# Start menu.
has_row Shortcut '^CardMailShortcut\tProgramMenuFolder\tCardMail\tStartMenuShortcut\t\[INSTALLDIR\]cardmail\.exe\t'
# Registry (root 2 = HKLM).
has_row Registry '\t2\tSoftware\\CardMail\tInstallDir\t\[INSTALLDIR\]\tStartMenuShortcut$'
has_row Registry "\t2\tSoftware\\\\CardMail\tVersion\t${VERSION//./\\.}\tStartMenuShortcut$"
# Properties: product identity, per-machine, uninstall entry (Add/Remove Programs).
has_row Property '^ProductName\tCardMail$'
has_row Property "^ProductVersion\t${VERSION//./\\.}$"
has_row Property '^UpgradeCode\t\{3b5f5224-ff1e-44f4-b454-12ba8d563de8\}$'
has_row Property '^Manufacturer\tCardMail$'
has_row Property '^ALLUSERS\t1$'
for p in ARPPRODUCTICON ARPHELPLINK ARPURLINFOABOUT ARPCONTACT ARPNOMODIFY; do has_row Property "^$p\t.+"; done
has_row Icon '^cardmail\.ico\t'
# PRESETS: deferred (0x400), no impersonation (0x800), exe named by a property (50) = 3122, run between
# InstallInitialize and InstallFinalize after CreateFolders, only when PRESETS is set and not on removal.
has_row CustomAction '^SetCmdExe\t51\tCARDMAIL_CMD\t\[System64Folder\]cmd\.exe\t?$'
has_row CustomAction '^CopyPresets\t3122\tCARDMAIL_CMD\t/d /c copy /y "\[PRESETS\]" "\[ProfilesDir\]"\t?$'
seqno() { table InstallExecuteSequence | awk -F'\t' -v a="$1" '$1 == a { print $3 }'; }
copy="$(seqno CopyPresets)"; setcmd="$(seqno SetCmdExe)"
if [ -z "$copy" ] || [ -z "$setcmd" ]; then fail "CopyPresets/SetCmdExe not in InstallExecuteSequence"; fi
if [ "$copy" -le "$(seqno CreateFolders)" ] || [ "$copy" -le "$(seqno InstallInitialize)" ] || [ "$copy" -ge "$(seqno InstallFinalize)" ]; then
  fail "CopyPresets at $copy is not between CreateFolders/InstallInitialize and InstallFinalize"
fi
[ "$setcmd" -lt "$(seqno InstallInitialize)" ] || fail "SetCmdExe at $setcmd runs after InstallInitialize"
has_row InstallExecuteSequence '^CopyPresets\tPRESETS AND NOT REMOVE\t'
# SecurePresets: the installed cardmail.exe (18 = exe in a File) deferred (0x400) without impersonation (0x800) =
# 3090, on every install and upgrade, after InstallFiles and before CopyPresets (a copied preset inherits the ACL).
has_row CustomAction '^SecurePresets\t3090\tcardmail\.exe\t--secure-presets\t?$'
has_row InstallExecuteSequence '^SecurePresets\tNOT REMOVE\t'
secure="$(seqno SecurePresets)"
if [ "$secure" -le "$(seqno InstallFiles)" ] || [ "$secure" -ge "$copy" ]; then
  fail "SecurePresets at $secure is not after InstallFiles and before CopyPresets ($copy)"
fi
echo "tables and properties: OK"

# The payload.
(cd "$tmp" && timeout 60 msiextract "$msi" >/dev/null) || fail "msiextract"
got="$(find "$tmp" -type f -name cardmail.exe)"
[ -n "$got" ] || fail "msiextract found no cardmail.exe"
# msiextract writes standard folders (ProgramFiles64Folder) as "."; the Directory rows above say where they go.
[ "$got" = "$tmp/CardMail/cardmail.exe" ] || fail "cardmail.exe extracted to $got, not CardMail/ (INSTALLDIR)"
# (grep reads captured output: `objdump | grep -q` fails under pipefail when grep exits early)
grep -q 'file format pei-x86-64' <<<"$(x86_64-w64-mingw32-objdump -f "$got")" || fail "cardmail.exe is not PE32+ x86-64"
grep -q 'Subsystem.*Windows GUI' <<<"$(x86_64-w64-mingw32-objdump -p "$got")" || fail "cardmail.exe is not a GUI program"
grep -q '\.rsrc' <<<"$(x86_64-w64-mingw32-objdump -h "$got")" || fail "cardmail.exe has no resources"
# Version resource strings are UTF-16LE.
python3 - "$got" "$VERSION" <<'PY' || fail "version resource of cardmail.exe does not say $VERSION"
import sys
data = open(sys.argv[1], "rb").read()
for s in ("ProductVersion", sys.argv[2], "CardMail"):
    assert s.encode("utf-16-le") in data, s
PY
[ ! -f "$exe" ] || cmp -s "$got" "$exe" || fail "the MSI's cardmail.exe differs from $exe"
echo "payload: $(du -b "$got" | cut -f1) bytes, PE32+ GUI with version resource: OK"

if [ -f "$ca" ]; then
  timeout 60 osslsigncode verify -CAfile "$ca" -in "$msi" >"$tmp/v1" 2>&1 || { cat "$tmp/v1" >&2; fail "MSI signature"; }
  timeout 60 osslsigncode verify -CAfile "$ca" -in "$got" >"$tmp/v2" 2>&1 || { cat "$tmp/v2" >&2; fail "cardmail.exe signature"; }
  echo "signatures (test CA): OK"
fi
echo "check-msi: OK $(basename "$msi")"
