// Package packaging holds no code: this directory has the installer scripts and templates (see the Install section of README.md)
// and packaging_test.go, which checks the files the installers ship (example preset, desktop entry, icons,
// FyneApp.toml) and that packaging/version.sh's -ldflags really stamp package version.
package packaging
