package profile

import (
	"errors"
	"path/filepath"
)

// ErrUnsafePreset is matched (errors.Is) by *UnsafePresetError.
var ErrUnsafePreset = errors.New("preset can be changed by users who are not administrators")

// UnsafePresetError: a system preset file, its directory or a directory above them can be changed by a user who
// is neither an administrator nor the current user (Unix: owned by another user, or writable by group or others;
// Windows: owned by, or granting write access to, another account than SYSTEM, Administrators, TrustedInstaller or
// the current user). Any local user could then point another user's mail at their own server, so the preset is
// ignored: List reports it as an entry with this error, Load returns it. Path is what is at fault, Reason says how
// (technical, English).
type UnsafePresetError struct {
	Path   string
	Reason string
}

func (e *UnsafePresetError) Error() string {
	return "preset ignored: " + e.Path + " " + e.Reason + "; only administrators may be able to change presets"
}

// Is makes errors.Is(err, ErrUnsafePreset) true.
func (e *UnsafePresetError) Is(target error) bool { return target == ErrUnsafePreset }

// presetGuard checks system presets before they are read, remembering each path's verdict for one List or Load.
type presetGuard struct {
	seen map[string]error
}

// file checks a preset file: the file itself and the directory listing it (nobody but an administrator may add or
// change presets there), then every directory above it and, when the file is a symbolic link, the directories of
// its target (nobody but an administrator may replace an entry there). nil when all are safe, or when the file
// cannot be resolved (readProfile then reports why).
func (g *presetGuard) file(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil
	}
	if err := g.one(real, true); err != nil {
		return err
	}
	if err := g.dir(filepath.Dir(path)); err != nil {
		return err
	}
	return g.chain(filepath.Dir(real), false)
}

// dir checks a preset directory (strictly) and the directories above it.
func (g *presetGuard) dir(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil // a missing directory holds no preset
	}
	return g.chain(real, true)
}

// chain checks dir (strictly when strict) and then each of its parents up to the root, not strictly.
func (g *presetGuard) chain(dir string, strict bool) error {
	for {
		if err := g.one(dir, strict); err != nil {
			return err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir, strict = parent, false
	}
}

// one checks a single resolved path once per guard. strict: the path is a preset file or a preset directory, which
// no other user may write at all; otherwise it is a directory above, where other users may add entries (Unix: a
// sticky world-writable directory; Windows: %ProgramData%, where every user may create folders) but must not be
// able to remove or replace them.
func (g *presetGuard) one(path string, strict bool) error {
	key := path
	if strict {
		key = "strict:" + path
	}
	if err, ok := g.seen[key]; ok {
		return err
	}
	if g.seen == nil {
		g.seen = map[string]error{}
	}
	err := checkOwnerAndAccess(path, strict)
	g.seen[key] = err
	return err
}
