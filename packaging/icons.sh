#!/usr/bin/env bash
# Regenerates the icon set in assets/icons/ from assets/icon.svg with rsvg-convert (Debian's librsvg2-bin) and
# ImageMagick's `convert` (Debian's imagemagick) for the .ico:
#   cardmail-<N>.png for the hicolor sizes the .deb installs and macOS's 1024, and cardmail.ico for the Windows
#   resource. The outputs are committed; run this only after changing assets/icon.svg.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/assets/icons"
mkdir -p "$out"
command -v rsvg-convert >/dev/null || { echo "icons.sh: rsvg-convert missing: apt-get install librsvg2-bin" >&2; exit 1; }
[ -x /usr/bin/convert ] || { echo "icons.sh: ImageMagick missing: apt-get install imagemagick" >&2; exit 1; }
for n in 16 22 24 32 48 64 128 256 512 1024; do
  # rendered from the vector at each size (no upscaling of a raster)
  rsvg-convert -w "$n" -h "$n" -f png -o "$out/cardmail-$n.png" "$root/assets/icon.svg"
done
/usr/bin/convert "$out/cardmail-16.png" "$out/cardmail-24.png" "$out/cardmail-32.png" "$out/cardmail-48.png" \
  "$out/cardmail-64.png" "$out/cardmail-128.png" "$out/cardmail-256.png" "$out/cardmail.ico"
