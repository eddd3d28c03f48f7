package profile

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/cardmail/cardmail/internal/atomicfile"
)

// Scope says where a profile file lives.
type Scope string

// Scopes.
const (
	ScopeUser   Scope = "user"   // the user's own directory: read-write
	ScopeSystem Scope = "system" // a preset directory deployed by IT: read-only
)

// systemDirTable is where IT deploys presets, by GOOS. Other Unix-like systems use the "linux" entry.
// "%ProgramData%" is replaced by that environment variable; when it is unset Windows has no preset directory.
var systemDirTable = map[string]string{
	"windows": `%ProgramData%\CardMail\profiles`,
	"darwin":  "/Library/Application Support/CardMail/profiles",
	"linux":   "/etc/cardmail/profiles",
}

// systemDirs returns the preset directories for goos, reading the environment through getenv.
func systemDirs(goos string, getenv func(string) string) []string {
	dir, ok := systemDirTable[goos]
	if !ok {
		dir = systemDirTable["linux"]
	}
	if strings.Contains(dir, "%ProgramData%") {
		pd := getenv("ProgramData")
		if pd == "" {
			return nil
		}
		dir = strings.ReplaceAll(dir, "%ProgramData%", strings.TrimRight(pd, `\/`))
	}
	return []string{dir}
}

// DefaultSystemDirs returns this system's preset directories (see systemDirTable): /etc/cardmail/profiles,
// %ProgramData%\CardMail\profiles or /Library/Application Support/CardMail/profiles.
func DefaultSystemDirs() []string { return systemDirs(runtime.GOOS, os.Getenv) }

// staleTemp is how old a temporary file left by Save must be before a later Save removes it. A younger one may
// belong to a Save running in another process right now.
var staleTemp = time.Minute

// Store is the set of profiles one user sees: the user's directory plus the system preset directories. A Store
// holds no open files and no cache; every method reads the disk again, so several processes (the GUI and the CLI)
// can share the directories. Methods are safe for concurrent use, across goroutines and processes: Save replaces a
// file atomically, so a reader sees the old or the new profile, never a mixture.
type Store struct {
	// UserDir holds the user's profiles, created (mode 0700) by the first Save.
	UserDir string
	// SystemDirs hold read-only presets; an earlier directory wins when two hold the same name.
	SystemDirs []string
}

// NewStore returns the Store for the current user: UserDir is os.UserConfigDir()/cardmail/profiles and SystemDirs
// is DefaultSystemDirs(). The error is the one of os.UserConfigDir (no home directory).
func NewStore() (*Store, error) {
	cfg, err := os.UserConfigDir()
	if err != nil {
		return nil, fmt.Errorf("profile: user config dir: %w", err)
	}
	return &Store{UserDir: filepath.Join(cfg, "cardmail", "profiles"), SystemDirs: DefaultSystemDirs()}, nil
}

// Entry is one profile as List and Load see it.
type Entry struct {
	// Name is the file name without ".json".
	Name  string
	Path  string
	Scope Scope
	// ReadOnly is true for system presets: Delete refuses them and Save shadows them.
	ReadOnly bool
	// Shadows is true for a user profile that hides a system preset of the same name.
	Shadows bool
	// Profile is the parsed, valid profile; nil when Err is set.
	Profile *Profile
	// Err is a *FileError when the file could not be read or is not a valid profile (List only).
	Err error
}

const fileExt = ".json"

// List returns one entry per profile name, sorted by name: the user's profiles and the system presets, a user
// profile hiding a preset of the same name (even when the user file is broken: Load reports its error). A file
// that cannot be read or parsed is an entry with Err set, next to the good ones; files whose name does not end in
// ".json" or starts with "." (Save's temporary files among them) are ignored. A system preset that a user other
// than an administrator could change is not read: its entry has Err wrapping *UnsafePresetError (ErrUnsafePreset),
// which the CLI and the GUI show as a warning; one that names a network path has a *ValidationError
// (network_path). The error is non-nil only when a
// directory exists but cannot be read (errors.Join of *FileError); the entries that could be read are returned
// with it. A missing directory is not an error.
func (s *Store) List() ([]Entry, error) {
	byName := map[string]Entry{}
	var dirErrs []error
	var guard presetGuard
	add := func(dir string, scope Scope) {
		des, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				dirErrs = append(dirErrs, &FileError{Path: dir, Err: err})
			}
			// os.ReadDir returns what it read before the error; use it.
		}
		for _, de := range des {
			base := de.Name()
			if strings.HasPrefix(base, ".") || !strings.HasSuffix(base, fileExt) || de.IsDir() {
				continue
			}
			name := strings.TrimSuffix(base, fileExt)
			if _, seen := byName[name]; seen {
				if e := byName[name]; e.Scope == ScopeUser && scope == ScopeSystem {
					e.Shadows = true
					byName[name] = e
				}
				continue
			}
			e := Entry{Name: name, Path: filepath.Join(dir, base), Scope: scope, ReadOnly: scope == ScopeSystem}
			if scope == ScopeSystem {
				e.Profile, e.Err = readPreset(&guard, e.Path, name)
			} else {
				e.Profile, e.Err = readProfile(e.Path, name)
			}
			byName[name] = e
		}
	}
	if s.UserDir != "" {
		add(s.UserDir, ScopeUser)
	}
	for _, d := range s.SystemDirs {
		add(d, ScopeSystem)
	}
	out := make([]Entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(dirErrs...)
}

// Load returns the profile called name: the user's if there is one, else the first system preset. Errors: a
// *ValidationError (reason bad_name) for a name that ValidName refuses, ErrNotFound (wrapped) when no directory
// holds it, a *FileError when the file exists but is unreadable or invalid (a broken user file is reported, not
// skipped in favour of the preset). A system preset that a user other than an administrator could change is
// refused with a *FileError wrapping *UnsafePresetError (ErrUnsafePreset).
func (s *Store) Load(name string) (Entry, error) {
	if !ValidName(name) {
		return Entry{}, &ValidationError{Field: "name", Reason: ReasonBadName}
	}
	var guard presetGuard
	try := func(dir string, scope Scope) (Entry, bool, error) {
		path := filepath.Join(dir, name+fileExt)
		var p *Profile
		var err error
		if scope == ScopeSystem {
			p, err = readPreset(&guard, path, name)
		} else {
			p, err = readProfile(path, name)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return Entry{}, false, nil
		}
		if err != nil {
			return Entry{}, true, err
		}
		return Entry{Name: name, Path: path, Scope: scope, ReadOnly: scope == ScopeSystem, Profile: p}, true, nil
	}
	var userEntry *Entry
	if s.UserDir != "" {
		e, found, err := try(s.UserDir, ScopeUser)
		if err != nil {
			return Entry{}, err
		}
		if found {
			userEntry = &e
		}
	}
	for _, d := range s.SystemDirs {
		if userEntry != nil {
			if _, err := os.Stat(filepath.Join(d, name+fileExt)); err == nil {
				userEntry.Shadows = true
				break
			}
			continue
		}
		e, found, err := try(d, ScopeSystem)
		if err != nil {
			return Entry{}, err
		}
		if found {
			return e, nil
		}
	}
	if userEntry != nil {
		return *userEntry, nil
	}
	return Entry{}, fmt.Errorf("profile %q: %w", name, ErrNotFound)
}

// readProfile reads and parses one file; the error is a *FileError (wrapping fs.ErrNotExist when it is absent).
func readProfile(path, name string) (*Profile, error) {
	fail := func(err error) (*Profile, error) { return nil, &FileError{Path: path, Err: err} }
	if !ValidName(name) {
		return fail(&ValidationError{Field: "name", Reason: ReasonBadName})
	}
	fi, err := os.Stat(path) // follows symlinks: IT may link presets
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() { // never open a FIFO or a device: reading could block forever
		return fail(ErrNotRegular)
	}
	f, err := openRead(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail(err)
	}
	if len(data) > MaxFileSize {
		return fail(ErrTooLarge)
	}
	p, err := Parse(data)
	if err != nil {
		return fail(err)
	}
	if p.Name != name {
		// A name that differs only in case is the same file on Windows and macOS: Rename leaves that state for an
		// instant between its two steps. The file name is the profile's identity.
		if !strings.EqualFold(p.Name, name) {
			return fail(&ValidationError{Field: "name", Reason: ReasonNameMismatch})
		}
		p.Name = name
	}
	return p, nil
}

// readPreset reads a system preset: refused unless only administrators (or the current user) can change it and the
// paths it names are local (see ValidatePreset). Errors are *FileError.
func readPreset(g *presetGuard, path, name string) (*Profile, error) {
	if err := g.file(path); err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	p, err := readProfile(path, name)
	if err != nil {
		return nil, err
	}
	if err := p.ValidatePreset(); err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return p, nil
}

// Save validates p and writes it as UserDir/<p.Name>.json, replacing any user profile of that name (on a file
// system that ignores case, "alice" replaces "Alice.json", which keeps its spelling: use Rename to change it). A
// system preset of the same name is not touched: the new user profile shadows it. The write is atomic: the JSON goes
// to a temporary file in the same directory (mode 0600), which is fsynced, renamed over the target, and the directory
// is fsynced, so a crash leaves either the old file or the new one, at worst plus a temporary file that List
// ignores and a later Save removes once it is older than a minute. Errors: *ValidationError (p is not saved),
// *FileError for file system failures. p.Version is ignored: Version is written.
func (s *Store) Save(p *Profile) error {
	return s.put(p, "") // atomicfile.Write fsyncs the directory
}

// put writes p atomically over path ("" means UserDir/<p.Name>.json) with internal/atomicfile.
func (s *Store) put(p *Profile, path string) error {
	data, target, err := s.prepare(p)
	if err != nil {
		return err
	}
	if path == "" {
		path = target
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return &FileError{Path: path, Err: err}
	}
	return nil
}

// Create saves a new profile like Save, but never replaces one: when the user directory already has a profile that
// the file system takes for p.Name (the same name, or one that differs only in case where file names ignore case:
// Windows, macOS), it returns an *ExistsError (ErrExists) and changes nothing. The check and the write are one
// atomic step (a hard link, or MoveFileEx without replace on Windows), so two processes creating the same name cannot
// both succeed. A system preset of that name is no obstacle: the new profile shadows it.
func (s *Store) Create(p *Profile) error {
	data, target, err := s.prepare(p)
	if err != nil {
		return err
	}
	if err := atomicfile.Create(target, data, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return s.existsError(p.Name, target)
		}
		return &FileError{Path: target, Err: err}
	}
	return nil
}

// Rename replaces the user profile called old with p, which may have another name; no profile is ever lost or
// overwritten on the way:
//   - p.Name == old: Save;
//   - old has no user file (a system preset, or already gone): Create;
//   - p.Name names another existing user profile: *ExistsError, nothing changes;
//   - p.Name differs from old only in case on a file system that ignores case ("Alice" to "alice" on Windows or
//     macOS: both names are one file): the file's content is replaced atomically, then the file is renamed to the
//     new spelling (through a temporary name where the file system ignores a rename that only changes case);
//   - otherwise p is created under its name (as Create), then old is deleted: a crash in between leaves both.
//
// Errors: *ValidationError, *ExistsError, *FileError.
func (s *Store) Rename(old string, p *Profile) error {
	if !ValidName(old) {
		return &ValidationError{Field: "name", Reason: ReasonBadName}
	}
	if old == p.Name {
		return s.Save(p)
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if s.UserDir == "" {
		return &FileError{Path: "", Err: fs.ErrInvalid}
	}
	oldPath := filepath.Join(s.UserDir, old+fileExt)
	oi, err := os.Stat(oldPath)
	if errors.Is(err, fs.ErrNotExist) {
		return s.Create(p)
	}
	if err != nil {
		return &FileError{Path: oldPath, Err: err}
	}
	target := filepath.Join(s.UserDir, p.Name+fileExt)
	ni, err := os.Stat(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &FileError{Path: target, Err: err}
	}
	if err != nil { // a new name
		if err := s.Create(p); err != nil {
			return err
		}
		if err := atomicfile.Remove(oldPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &FileError{Path: oldPath, Err: err}
		}
		return s.syncUserDir()
	}
	if !os.SameFile(oi, ni) {
		return s.existsError(p.Name, target)
	}
	// One file, two spellings: new content first (readProfile accepts a name that differs only in case), then
	// the new spelling.
	if err := s.put(p, oldPath); err != nil {
		return err
	}
	if err := atomicfile.Rename(oldPath, target); err != nil {
		return &FileError{Path: target, Err: err}
	}
	if s.onDisk(p.Name) != p.Name {
		// The file system ignored a rename that only changes case (Linux case-folding directories): move the
		// file to a temporary name and back. List does not show it for that instant.
		mid := filepath.Join(s.UserDir, "."+p.Name+fileExt+".respell")
		if err := atomicfile.Rename(target, mid); err != nil {
			return &FileError{Path: target, Err: err}
		}
		if err := atomicfile.Rename(mid, target); err != nil {
			return &FileError{Path: target, Err: err}
		}
	}
	return s.syncUserDir()
}

// prepare validates and marshals p, and makes sure UserDir exists (removing temporary files a crash left there);
// target is UserDir/<p.Name>.json. Errors: *ValidationError, *FileError.
func (s *Store) prepare(p *Profile) (data []byte, target string, err error) {
	data, err = Marshal(p)
	if err != nil {
		return nil, "", err
	}
	if s.UserDir == "" {
		return nil, "", &FileError{Path: "", Err: fs.ErrInvalid}
	}
	if err := os.MkdirAll(s.UserDir, 0o700); err != nil {
		return nil, "", &FileError{Path: s.UserDir, Err: err}
	}
	s.removeStaleTemps()
	return data, filepath.Join(s.UserDir, p.Name+fileExt), nil
}

func (s *Store) syncUserDir() error {
	if err := atomicfile.SyncDir(s.UserDir); err != nil {
		return &FileError{Path: s.UserDir, Err: err}
	}
	return nil
}

// onDisk returns how the user directory spells the profile file name takes for name, without ".json": name
// itself when that entry exists, else the first entry equal to it but for case, else "".
func (s *Store) onDisk(name string) string {
	des, _ := os.ReadDir(s.UserDir)
	found := ""
	for _, de := range des {
		base, ok := strings.CutSuffix(de.Name(), fileExt)
		switch {
		case !ok:
		case base == name:
			return name
		case found == "" && strings.EqualFold(base, name):
			found = base
		}
	}
	return found
}

func (s *Store) existsError(name, target string) error {
	return &ExistsError{Name: name, Existing: cmp.Or(s.onDisk(name), name), Path: target}
}

// removeStaleTemps deletes Save's temporary files older than staleTemp (left by a crash). Failures are ignored:
// the files are harmless and the next Save tries again.
func (s *Store) removeStaleTemps() {
	des, err := os.ReadDir(s.UserDir)
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-staleTemp)
	for _, de := range des {
		if !atomicfile.IsTemp(de.Name()) || !de.Type().IsRegular() {
			continue
		}
		if fi, err := de.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(s.UserDir, de.Name()))
		}
	}
}

// Delete removes the user's profile called name; a system preset it shadowed becomes visible again. Errors: a
// *ValidationError (bad_name), ErrReadOnly (wrapped) when only a system preset has that name, ErrNotFound
// (wrapped) when nothing has it, *FileError for file system failures.
func (s *Store) Delete(name string) error {
	if !ValidName(name) {
		return &ValidationError{Field: "name", Reason: ReasonBadName}
	}
	if s.UserDir != "" {
		path := filepath.Join(s.UserDir, name+fileExt)
		err := atomicfile.Remove(path)
		if err == nil {
			if err := atomicfile.SyncDir(s.UserDir); err != nil {
				return &FileError{Path: s.UserDir, Err: err}
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return &FileError{Path: path, Err: err}
		}
	}
	for _, d := range s.SystemDirs {
		if _, err := os.Lstat(filepath.Join(d, name+fileExt)); err == nil {
			return fmt.Errorf("profile %q: %w", name, ErrReadOnly)
		}
	}
	return fmt.Errorf("profile %q: %w", name, ErrNotFound)
}
