// Package assets embeds the files CardMail ships inside its binary: translations, icons and CA roots.
//
// It has no logic beyond access to those files, so that every package (CLI, GUI, mail) reads the same bytes.
package assets

import "embed"

// Translations holds translations/<lang>.json: one flat JSON object per language mapping a message key to its text
// (go-i18n's simple format, read by Fyne's lang package in the GUI and by package words elsewhere).
//
//go:embed translations/*.json
var Translations embed.FS

// Roots holds roots/*.pem: trust anchors bundled for the health-messaging TLS policy (IGC-Santé).
//
//go:embed roots/*.pem
var Roots embed.FS

// IconPNG is the application icon as a 128×128 PNG: the window icon (a bitmap is what X11 and Windows take, and
// decoding it costs far less memory than rasterising the SVG).
//
//go:embed icons/cardmail-128.png
var IconPNG []byte
