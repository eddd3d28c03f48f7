//go:build tools

// Package tools pins the packaging tools this module builds: `go build -o ../../bin/fyne fyne.io/tools/cmd/fyne`.
package tools

import _ "fyne.io/tools/cmd/fyne"
