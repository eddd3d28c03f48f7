// Package version holds the release CardMail was built as. The build stamps it with the linker:
//
//	go build -ldflags "-X github.com/cardmail/cardmail/version.Version=0.1.0 -X github.com/cardmail/cardmail/version.Commit=abc1234"
//
// packaging/version.sh computes those flags from FyneApp.toml's Version and `git rev-parse --short HEAD`; every
// Makefile and packaging target uses it, so the number is written in one place. A plain `go build` leaves Version
// "dev" and Commit empty.
package version

// Version is the release number (FyneApp.toml's Details.Version, e.g. "0.1.0"), or "dev" for an unstamped build.
var Version = "dev"

// Commit is the short git commit the binary was built from, or "" when unknown.
var Commit = ""

// String returns Version, followed by " (" + Commit + ")" when Commit is known: "0.1.0 (abc1234)" or "dev".
// It is what `cardmail --version` prints and what reports and the About dialog show.
func String() string {
	if Commit == "" {
		return Version
	}
	return Version + " (" + Commit + ")"
}
