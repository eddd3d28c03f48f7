#!/usr/bin/env bash
# macOS packaging (runs on a macOS host only, with Go and the Xcode command-line tools; CI: .github/workflows/macos.yml):
#   dist/cardmail-<version>-macos-universal.dmg   CardMail.app (arm64 + amd64, lipo) and an /Applications link
# Steps: stamped `go build` per architecture (version from packaging/version.sh), lipo, `fyne package -os darwin`
# with the pinned fyne tool (packaging/fyne-tool.sh) on a copy of FyneApp.toml with the 1024-pixel icon, codesign
# (MACOS_SIGN_IDENTITY, else ad hoc "-"), then hdiutil create (UDZO) and hdiutil verify.
# It cannot run on the Linux machines of this project (no macOS SDK, no hdiutil).
set -euo pipefail
umask 022
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
fail() { echo "macos/package.sh: $*" >&2; exit 1; }
[ "$(uname -s)" = Darwin ] || fail "needs a macOS host (uname says $(uname -s))"
for t in go lipo codesign hdiutil xcrun; do
  command -v "$t" >/dev/null || fail "$t missing: install Go and the Xcode command-line tools (xcode-select --install)"
done
eval "$(bash packaging/version.sh)"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
fyne="$(bash packaging/fyne-tool.sh)"
work="$root/bin/pkg/macos"
dist="$root/dist"
rm -rf "$work"
mkdir -p "$work" "$dist"

for arch in arm64 amd64; do
  echo "== go build cardmail $VERSION ($COMMIT) darwin/$arch"
  CGO_ENABLED=1 GOOS=darwin GOARCH="$arch" MACOSX_DEPLOYMENT_TARGET=11.0 \
    go build -trimpath -ldflags "$LDFLAGS" -o "$work/cardmail-$arch" .
done
lipo -create -output "$work/cardmail" "$work/cardmail-arm64" "$work/cardmail-amd64"
got="$("$work/cardmail" --version)"
[ "$got" = "cardmail $VERSION ($COMMIT)" ] || fail "binary says '$got', want 'cardmail $VERSION ($COMMIT)'"

echo "== fyne package -os darwin"
# fyne package bumps Build in the FyneApp.toml it reads and insists on a .go file: give it a copy.
src="$work/_fyne-src"  # "_": go list ./... skips it (it holds a stub main.go)
mkdir -p "$src/assets"
cp FyneApp.toml "$src/"
cp assets/icons/cardmail-1024.png "$src/assets/icon.png"
printf 'package main\n\nfunc main() {}\n' > "$src/main.go"
(cd "$src" && "$fyne" package -os darwin --exe "$work/cardmail" --app-version "$VERSION" --app-build "$BUILD" --release)
app="$src/CardMail.app"
[ -d "$app" ] || fail "fyne package made no CardMail.app"

echo "== codesign"
codesign --force --deep --options runtime --sign "${MACOS_SIGN_IDENTITY:--}" "$app"
codesign --verify --deep --strict "$app"

echo "== dmg"
stage="$work/dmg"
mkdir -p "$stage"
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
dmg="$dist/cardmail-$VERSION-macos-universal.dmg"
rm -f "$dmg"
hdiutil create -volname "CardMail $VERSION" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"
hdiutil verify "$dmg"
ls -l "$dmg"
