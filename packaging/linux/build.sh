#!/usr/bin/env bash
# make package-linux: builds the stamped binary and the two Linux artefacts in dist/:
#   cardmail-<version>-linux-amd64.tar.xz  Fyne's own layout (`fyne package -os linux`: usr/local/bin, share/
#                                          applications, share/pixmaps and a Makefile whose `make install` copies them)
#   cardmail_<version>_amd64.deb           dpkg-deb --root-owner-group; Depends from dpkg-shlibdeps plus pcscd
# Intermediate files go to bin/pkg/linux (ignored by git). Needs: go, gcc and the GL/X headers, dpkg-dev, xz-utils
# (scripts/install-deps.sh). Runs lintian on the .deb when it is installed and prints its findings (not fatal).
set -euo pipefail
umask 022
fail() { echo "linux/build.sh: $*" >&2; exit 1; }
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
eval "$(bash packaging/version.sh)"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
fyne="$(bash packaging/fyne-tool.sh)"
work="$root/bin/pkg/linux"
dist="$root/dist"
rm -rf "$work"
mkdir -p "$work" "$dist"

echo "== go build cardmail $VERSION ($COMMIT) linux/amd64"
# PIE: position-independent executable, as Debian hardens its own programs (lintian: hardening-no-pie).
CGO_ENABLED=1 GOOS=linux GOARCH=amd64 go build -buildmode=pie -trimpath -ldflags "$LDFLAGS" -o "$work/cardmail" .
got="$("$work/cardmail" --version)"
[ "$got" = "cardmail $VERSION ($COMMIT)" ] || fail "binary says '$got', want 'cardmail $VERSION ($COMMIT)'"

echo "== fyne package -os linux (tar.xz)"
# fyne package reads FyneApp.toml (and the icon it names) from its source directory, writes <Name>.tar.xz there and
# then bumps Build in that FyneApp.toml: give it a copy (with a stub .go file, which it insists on even with --exe)
# so the source tree is left alone.
src="$work/_fyne-src"  # "_": go list ./... skips it (it holds a stub main.go)
mkdir -p "$src/assets"
cp FyneApp.toml "$src/"
cp assets/icon.png "$src/assets/icon.png"
printf 'package main\n\nfunc main() {}\n' > "$src/main.go"
(cd "$src" && "$fyne" package -os linux --exe "$work/cardmail" --app-version "$VERSION" --app-build "$BUILD" --release)
tarball="$dist/cardmail-$VERSION-linux-amd64.tar.xz"
# fyne v1.7.2's Makefile names the icon without its extension (Icon := "<app id>") while the archive holds
# <app id>.png, so its `make install` fails: fix that line, repack, and check that `make install` then works.
unpack="$work/tar"
mkdir -p "$unpack"
tar -xJf "$src/CardMail.tar.xz" -C "$unpack"
[ -f "$unpack/cardmail/usr/local/share/pixmaps/$APP_ID.png" ] || fail "fyne's archive has no pixmaps/$APP_ID.png"
sed -i "s|^Icon := \"$APP_ID\"\$|Icon := \"$APP_ID.png\"|" "$unpack/cardmail/Makefile"
grep -q "^Icon := \"$APP_ID.png\"\$" "$unpack/cardmail/Makefile" || fail "fyne's Makefile has no Icon line to fix"
tar -cJf "$tarball" -C "$unpack" --owner=0 --group=0 --numeric-owner cardmail
make -s -C "$unpack/cardmail" install DESTDIR="$work/tar-install" >/dev/null
for f in bin/cardmail "share/applications/$APP_ID.desktop" "share/pixmaps/$APP_ID.png"; do
  [ -f "$work/tar-install/usr/$f" ] || [ -f "$work/tar-install/usr/local/$f" ] || fail "make install of the tar.xz did not install $f"
done

echo "== .deb"
deb="$work/deb"
install -D -m0755 "$work/cardmail" "$deb/usr/bin/cardmail"
install -D -m0644 packaging/linux/fr.cardmail.desktop.desktop "$deb/usr/share/applications/fr.cardmail.desktop.desktop"
for n in 16 22 24 32 48 64 128 256 512; do
  install -D -m0644 "assets/icons/cardmail-$n.png" "$deb/usr/share/icons/hicolor/${n}x${n}/apps/cardmail.png"
done
install -D -m0644 assets/icon.svg "$deb/usr/share/icons/hicolor/scalable/apps/cardmail.svg"
install -D -m0644 packaging/linux/example.json.sample "$deb/etc/cardmail/profiles/example.json.sample"
install -D -m0644 packaging/linux/copyright "$deb/usr/share/doc/cardmail/copyright"
mkdir -p "$deb/usr/share/man/man1"
gzip -9n -c packaging/linux/cardmail.1 > "$deb/usr/share/man/man1/cardmail.1.gz"
chmod 0644 "$deb/usr/share/man/man1/cardmail.1.gz"
printf 'cardmail (%s) unstable; urgency=medium\n\n  * Release %s, commit %s.\n\n -- CardMail maintainers <cardmail@cardmail.invalid>  %s\n' \
  "$VERSION" "$VERSION" "$COMMIT" "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
  | gzip -9n > "$work/changelog.gz"
install -D -m0644 "$work/changelog.gz" "$deb/usr/share/doc/cardmail/changelog.gz"

# Shared-library dependencies of the binary, as Debian names them (libc6, libgl1, libx11-6, libpcsclite1, ...).
shl="$work/shlibdeps"
mkdir -p "$shl/debian"
printf 'Source: cardmail\n\nPackage: cardmail\nArchitecture: amd64\n' > "$shl/debian/control"
shlib="$(cd "$shl" && dpkg-shlibdeps -O -e"$deb/usr/bin/cardmail" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlib" ] || fail "dpkg-shlibdeps found no dependencies"
# GLFW (Fyne's window layer) dlopens the X11 and Wayland client libraries at run time, so dpkg-shlibdeps, which
# reads only DT_NEEDED, cannot see them: they are listed here (from the binary's strings; Debian names by dpkg -S).
# libdecor (Wayland title bars) is optional for GLFW and only suggested.
dlopened="libx11-6, libx11-xcb1, libxcursor1, libxext6, libxi6, libxinerama1, libxrandr2, libxrender1, libxxf86vm1"
dlopened="$dlopened, libxkbcommon0, libwayland-cursor0, libwayland-egl1, libegl1"
depends="$shlib, $dlopened, pcscd"
case ", $shlib," in *", libpcsclite1"*) ;; *) depends="$depends, libpcsclite1" ;; esac
size="$(du -sk --exclude=DEBIAN "$deb" | cut -f1)"
mkdir -p "$deb/DEBIAN"
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
  packaging/linux/control.in > "$deb/DEBIAN/control"
install -m0644 packaging/linux/conffiles "$deb/DEBIAN/conffiles"
debfile="$dist/cardmail_${VERSION}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$deb" "$debfile" >/dev/null
echo "Depends: $depends"

if command -v lintian >/dev/null; then
  echo "== lintian"
  lintian --tag-display-limit 0 "$debfile" || true
fi
ls -l "$tarball" "$debfile"
