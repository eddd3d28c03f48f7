#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages CardMail needs to build, run its demo and run its tests.
# Idempotent: installs only what is missing; uses sudo when not root.
set -euo pipefail

pkgs=(
  # build: Go toolchain is expected; cgo and Fyne's GL/X11/Wayland headers
  gcc pkg-config libgl1-mesa-dev xorg-dev libxkbcommon-dev libwayland-dev
  # smart-card chain: PC/SC daemon, virtual reader driver, PKCS#11 modules
  pcscd libpcsclite-dev vsmartcard-vpcd opensc opensc-pkcs11 pcsc-tools softhsm2
  # headless GUI runs and screenshots
  xvfb x11-apps x11-utils xdotool imagemagick
  # TLS tooling used by tests
  openssl ca-certificates curl
  gcc-mingw-w64-x86-64 wixl msitools osslsigncode dpkg-dev fakeroot xz-utils shellcheck lintian librsvg2-bin imagemagick  # packaging: make package-*
  # Windows test stage (packaging/wine): Wine 8.0, its headers and tools to build winscard's PC/SC bridge, and what
  # OpenSC's source needs to be cross-built for Windows
  wine64 wine64-tools libwine-dev autoconf automake libtool
)
if [ "${CARDMAIL_MAIL_SERVERS:-1}" = 1 ]; then
  pkgs+=(dovecot-core dovecot-imapd dovecot-lmtpd dovecot-submissiond postfix python3)
  pkgs+=(isync)  # mbsync: a real mail client syncing through the bridge (bridge tests and benchmark)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}" >&2
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
