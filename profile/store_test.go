package profile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := tempDir(t)
	sys := filepath.Join(root, "system")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Store{UserDir: filepath.Join(root, "user", "cardmail", "profiles"), SystemDirs: []string{sys}}, sys
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s, _ := newStore(t)
	p := validProfile()
	p.Version = 0 // Save writes Version whatever the caller left there
	if err := s.Save(p); err != nil {
		t.Fatalf("Save: %v", err)
	}
	e, err := s.Load("cabinet")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := validProfile()
	if !reflect.DeepEqual(e.Profile, want) || e.Scope != ScopeUser || e.ReadOnly || e.Shadows {
		t.Fatalf("Load = %+v (%+v)", e, e.Profile)
	}
	fi, err := os.Stat(e.Path)
	if err != nil {
		t.Fatal(err)
	}
	di, err := os.Stat(s.UserDir)
	if err != nil {
		t.Fatal(err)
	}
	// Unix modes; Windows has none (Go reports 0666/0777): there the user's %APPDATA% is private by its ACL.
	if runtime.GOOS != "windows" {
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %v, want 0700", di.Mode().Perm())
		}
	}
	// Overwrite, then list.
	p2 := validProfile()
	p2.IMAP.Port = 143
	p2.IMAP.Security = StartTLS
	if err := s.Save(p2); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Err != nil || list[0].Profile.IMAP.Port != 143 {
		t.Fatalf("List = %+v", list)
	}
	if err := s.Delete("cabinet"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Load("cabinet"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Delete: %v", err)
	}
	if err := s.Delete("cabinet"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestStoreRefuses(t *testing.T) {
	s, _ := newStore(t)
	cases := []struct {
		name          string
		mutate        func(*Profile)
		field, reason string
	}{
		{"path traversal", func(p *Profile) { p.Name = "../../etc/evil" }, "name", ReasonBadName},
		{"absolute", func(p *Profile) { p.Name = "/tmp/evil" }, "name", ReasonBadName},
		{"hidden", func(p *Profile) { p.Name = ".cabinet" }, "name", ReasonBadName},
		{"device", func(p *Profile) { p.Name = "NUL" }, "name", ReasonBadName},
		{"bad port", func(p *Profile) { p.SMTP.Port = 0 }, "smtp.port", ReasonMissing},
		{"bad security", func(p *Profile) { p.IMAP.Security = "tls" }, "imap.security", ReasonBadSecurity},
	}
	for _, tc := range cases {
		p := validProfile()
		tc.mutate(p)
		err := s.Save(p)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || ve.Reason != tc.reason {
			t.Errorf("%s: Save err %v, want %s/%s", tc.name, err, tc.field, tc.reason)
		}
	}
	if _, err := os.Stat(s.UserDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused Save created the user dir: %v", err)
	}
	for _, name := range []string{"../x", "", "a/b"} {
		var ve *ValidationError
		if _, err := s.Load(name); !errors.As(err, &ve) || ve.Reason != ReasonBadName {
			t.Errorf("Load(%q) err %v", name, err)
		}
		if err := s.Delete(name); !errors.As(err, &ve) || ve.Reason != ReasonBadName {
			t.Errorf("Delete(%q) err %v", name, err)
		}
	}
}

func presetJSON(name string, port int) string {
	return fmt.Sprintf(`{"version":1,"name":%q,"address":"it@clinic.example",
 "imap":{"host":"imap.clinic.example","port":%d,"security":"implicit"},
 "smtp":{"host":"smtp.clinic.example","port":465,"security":"implicit"},
 "login":"auto","tls_policy":"mssante"}`, name, port)
}

func TestStoreSystemPresets(t *testing.T) {
	s, sys := newStore(t)
	sys2 := filepath.Join(filepath.Dir(sys), "system2")
	if err := os.MkdirAll(sys2, 0o755); err != nil {
		t.Fatal(err)
	}
	s.SystemDirs = append(s.SystemDirs, sys2, filepath.Join(sys, "absent"))
	writeFile(t, filepath.Join(sys, "clinic.json"), presetJSON("clinic", 993))
	writeFile(t, filepath.Join(sys2, "clinic.json"), presetJSON("clinic", 1993)) // hidden by the first system dir
	writeFile(t, filepath.Join(sys2, "other.json"), presetJSON("other", 993))

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "clinic" || !list[0].ReadOnly || list[0].Scope != ScopeSystem ||
		list[0].Profile.IMAP.Port != 993 || list[1].Name != "other" || !list[1].ReadOnly {
		t.Fatalf("List = %+v", list)
	}
	if err := s.Delete("clinic"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Delete(preset) = %v, want ErrReadOnly", err)
	}
	// Saving under the preset's name creates a user profile that shadows it.
	e, err := s.Load("clinic")
	if err != nil {
		t.Fatal(err)
	}
	mine := e.Profile.Clone()
	mine.IMAP.Port = 10993
	if err := s.Save(mine); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(sys, "clinic.json")); string(data) != presetJSON("clinic", 993) {
		t.Fatal("Save changed the system preset")
	}
	e, err = s.Load("clinic")
	if err != nil {
		t.Fatal(err)
	}
	if e.Scope != ScopeUser || e.ReadOnly || !e.Shadows || e.Profile.IMAP.Port != 10993 {
		t.Fatalf("Load after shadowing = %+v", e)
	}
	list, _ = s.List()
	if len(list) != 2 || list[0].Scope != ScopeUser || !list[0].Shadows || list[0].Profile.IMAP.Port != 10993 {
		t.Fatalf("List after shadowing = %+v", list)
	}
	// Deleting the user profile uncovers the preset again.
	if err := s.Delete("clinic"); err != nil {
		t.Fatal(err)
	}
	e, err = s.Load("clinic")
	if err != nil || e.Scope != ScopeSystem || e.Profile.IMAP.Port != 993 {
		t.Fatalf("Load after Delete = %+v, %v", e, err)
	}
}

func TestStoreListBadFiles(t *testing.T) {
	s, sys := newStore(t)
	if err := s.Save(validProfile()); err != nil {
		t.Fatal(err)
	}
	u := s.UserDir
	writeFile(t, filepath.Join(u, "badjson.json"), `{"version":1,`)
	writeFile(t, filepath.Join(u, "future.json"), strings.Replace(presetJSON("future", 993), `"version":1`, `"version":7`, 1))
	writeFile(t, filepath.Join(u, "badport.json"), presetJSON("badport", 99999))
	writeFile(t, filepath.Join(u, "renamed.json"), presetJSON("original", 993))
	writeFile(t, filepath.Join(u, "huge.json"), presetJSON("huge", 993)+strings.Repeat("\n", MaxFileSize))
	writeFile(t, filepath.Join(u, "bad name!.json"), presetJSON("bad name!", 993))
	writeFile(t, filepath.Join(u, "notes.txt"), "ignored")
	writeFile(t, filepath.Join(u, ".hidden.json"), "ignored")
	if err := os.Mkdir(filepath.Join(u, "dir.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sys, "badjson.json"), presetJSON("badjson", 993)) // shadowed by the broken user file
	writeFile(t, filepath.Join(sys, "preset.json"), presetJSON("preset", 993))

	list, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	type check func(error) bool
	var (
		syntax  check = func(err error) bool { var e *SyntaxError; return errors.As(err, &e) }
		version check = func(err error) bool { var e *VersionError; return errors.As(err, &e) && e.Version == 7 }
		reason        = func(field, r string) check {
			return func(err error) bool {
				var e *ValidationError
				return errors.As(err, &e) && e.Field == field && e.Reason == r
			}
		}
		large check = func(err error) bool { return errors.Is(err, ErrTooLarge) }
	)
	want := map[string]check{
		"bad name!": reason("name", ReasonBadName),
		"badjson":   syntax,
		"badport":   reason("imap.port", ReasonBadPort),
		"cabinet":   nil,
		"future":    version,
		"huge":      large,
		"preset":    nil,
		"renamed":   reason("name", ReasonNameMismatch),
	}
	got := map[string]Entry{}
	for _, e := range list {
		got[e.Name] = e
	}
	if len(got) != len(want) || len(list) != len(want) {
		t.Fatalf("List names %v, want %v", keys(got), keys(want))
	}
	for name, ok := range want {
		e := got[name]
		if ok == nil {
			if e.Err != nil || e.Profile == nil {
				t.Errorf("%s: %+v", name, e)
			}
			continue
		}
		var fe *FileError
		if e.Profile != nil || !errors.As(e.Err, &fe) || fe.Path != e.Path || !ok(e.Err) {
			t.Errorf("%s: Err %T %v", name, e.Err, e.Err)
		}
	}
	if e := got["badjson"]; e.Scope != ScopeUser || !e.Shadows {
		t.Errorf("broken user file must shadow the preset: %+v", e)
	}
	if _, err := s.Load("badjson"); !errors.As(err, new(*SyntaxError)) {
		t.Errorf("Load(badjson) = %v, want the user file's SyntaxError", err)
	}
	if _, err := s.Load("dir"); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Load(dir) = %v, want ErrNotRegular", err)
	}

	// A system "directory" that is a file: reported, the rest still listed. (Wine 8 lists a file as an empty
	// directory without an error; Windows and Unix report it. The Wine stage sets CARDMAIL_TEST_WINE.)
	if os.Getenv("CARDMAIL_TEST_WINE") == "1" {
		return
	}
	s.SystemDirs = append(s.SystemDirs, filepath.Join(u, "notes.txt"))
	list, err = s.List()
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != filepath.Join(u, "notes.txt") || len(list) != len(want) {
		t.Fatalf("List with a bad dir: %d entries, err %v", len(list), err)
	}
}

func keys(m any) []string {
	var out []string
	for _, k := range reflect.ValueOf(m).MapKeys() {
		out = append(out, k.String())
	}
	return out
}

// TestStoreCrashLeftovers simulates a crash between CreateTemp and Rename: the half-written temporary file is
// ignored by List and Load, removed by the next Save once stale, and a fresh one (another process's Save in
// flight) is left alone.
func TestStoreCrashLeftovers(t *testing.T) {
	s, _ := newStore(t)
	if err := s.Save(validProfile()); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(s.UserDir, ".cabinet.json.tmp-12345")
	fresh := filepath.Join(s.UserDir, ".other.json.tmp-67890")
	full, _ := Marshal(validProfile())
	writeFile(t, stale, string(full[:len(full)/2]))
	writeFile(t, fresh, string(full[:10]))
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Err != nil {
		t.Fatalf("List with leftovers = %+v, %v", list, err)
	}
	if e, err := s.Load("cabinet"); err != nil || !reflect.DeepEqual(e.Profile, validProfile()) {
		t.Fatalf("Load with leftovers = %+v, %v", e, err)
	}
	p := validProfile()
	p.Name = "second"
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temp file survived Save: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file removed: %v", err)
	}
}

// TestStoreConcurrentSaves has writers replace the same profiles over and over while readers Load and List: every
// read must parse to one of the written versions, and no temporary file may remain.
func TestStoreConcurrentSaves(t *testing.T) {
	s, _ := newStore(t)
	const writers, rounds, readers = 12, 40, 4
	names := []string{"alpha", "beta"}
	if err := os.MkdirAll(s.UserDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds+readers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				p := validProfile()
				p.Name = names[(w+r)%len(names)]
				p.IMAP.Port = 1 + w*rounds + r
				// Vary the size so that a torn write would be visible.
				p.CAFiles = make([]string, (w+r)%7)
				for i := range p.CAFiles {
					p.CAFiles[i] = fmt.Sprintf("/ca/%d-%d-%s.pem", w, r, strings.Repeat("x", 100*i))
				}
				if err := s.Save(p); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	done := make(chan struct{})
	var rwg sync.WaitGroup
	reads := make([]int, readers)
	for r := 0; r < readers; r++ {
		rwg.Add(1)
		go func(r int) {
			defer rwg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, n := range names {
					e, err := s.Load(n)
					if errors.Is(err, ErrNotFound) {
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("Load(%s) while saving: %w", n, err)
						return
					}
					if e.Profile.Name != n || e.Profile.IMAP.Port < 1 || e.Profile.IMAP.Port > writers*rounds {
						errs <- fmt.Errorf("Load(%s) = %+v", n, e.Profile)
						return
					}
					reads[r]++
				}
				list, err := s.List()
				if err != nil {
					errs <- err
					return
				}
				for _, e := range list {
					if e.Err != nil {
						errs <- fmt.Errorf("List while saving: %w", e.Err)
						return
					}
				}
			}
		}(r)
	}
	wg.Wait()
	close(done)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	des, err := os.ReadDir(s.UserDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, de := range des {
		files = append(files, de.Name())
	}
	if !reflect.DeepEqual(files, []string{"alpha.json", "beta.json"}) {
		t.Errorf("files left: %q", files)
	}
	total := 0
	for _, n := range reads {
		total += n
	}
	t.Logf("%d saves, %d successful concurrent loads", writers*rounds, total)
}

// BenchmarkSave measures an atomic, fsynced Save; BenchmarkSaveBaselineWriteFile is a plain os.WriteFile of the
// same bytes in the same directory, without fsync or rename, for comparison in the same run.
func BenchmarkSave(b *testing.B) {
	s := &Store{UserDir: b.TempDir()}
	p := validProfile()
	for b.Loop() {
		if err := s.Save(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSaveBaselineWriteFile(b *testing.B) {
	dir := b.TempDir()
	data, _ := Marshal(validProfile())
	for b.Loop() {
		if err := os.WriteFile(filepath.Join(dir, "cabinet.json"), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}
