package profile

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
)

// envCaseInsensitive makes the tests below insist that their directory ignores case, so that a run meant to cover a
// case-insensitive file system cannot pass on a case-sensitive one by accident. The Wine stage (packaging/wine)
// sets it: Wine's drive_c compares names as Windows does.
const envCaseInsensitive = "CARDMAIL_TEST_CASE_INSENSITIVE"

// caseStore returns a store in a fresh directory and whether that directory ignores case (probed with a file).
func caseStore(t *testing.T) (*Store, bool) {
	t.Helper()
	s, _ := newStore(t)
	if err := os.MkdirAll(s.UserDir, 0o700); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(s.UserDir, "Probe.tmp")
	writeFile(t, probe, "x")
	_, err := os.Stat(filepath.Join(s.UserDir, "pROBE.tmp"))
	insensitive := err == nil
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(envCaseInsensitive) == "1" && !insensitive {
		t.Fatalf("%s=1 but %s compares names with case", envCaseInsensitive, s.UserDir)
	}
	t.Logf("%s: case-insensitive=%v", s.UserDir, insensitive)
	return s, insensitive
}

// userFiles lists the .json files of the user directory, as spelled on disk.
func userFiles(t *testing.T, s *Store) []string {
	t.Helper()
	des, err := os.ReadDir(s.UserDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".json") {
			out = append(out, de.Name())
		}
	}
	sort.Strings(out)
	return out
}

func named(name, addr string) *Profile {
	p := validProfile()
	p.Name, p.Address = name, addr
	return p
}

// Renaming "Alice" to "alice" keeps the profile, under the new spelling, with the new content: on a case-insensitive
// file system both names are one file, which the old code saved over and then deleted.
func TestRenameCaseOnly(t *testing.T) {
	s, insensitive := caseStore(t)
	if err := s.Create(named("Alice", "alice@clinic.example")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename("Alice", named("alice", "alice.martin@clinic.example")); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if got := userFiles(t, s); !reflect.DeepEqual(got, []string{"alice.json"}) {
		t.Fatalf("files after rename: %v, want [alice.json]", got)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Name != "alice" || list[0].Profile == nil ||
		list[0].Profile.Address != "alice.martin@clinic.example" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// And back, and to an unrelated name: always exactly one file, the last content.
	if err := s.Rename("alice", named("ALICE", "a3@clinic.example")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename("ALICE", named("Alice Martin", "a4@clinic.example")); err != nil {
		t.Fatal(err)
	}
	if got := userFiles(t, s); !reflect.DeepEqual(got, []string{"Alice Martin.json"}) {
		t.Fatalf("files: %v", got)
	}
	e, err := s.Load("Alice Martin")
	if err != nil || e.Profile.Address != "a4@clinic.example" {
		t.Fatalf("Load = %+v, %v", e, err)
	}
	t.Logf("case-insensitive=%v: Alice -> alice -> ALICE -> Alice Martin kept one file", insensitive)
	if insensitive {
		// What the wizard did before Rename existed: save under the new name, delete the old one. Here both are
		// one file, so nothing is left. This shows the directory really exercises the bug Rename avoids.
		if err := s.Save(named("bob", "bob@clinic.example")); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete("BOB"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load("bob"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("save+delete on a case-insensitive directory: Load = %v, want the profile gone", err)
		}
	}
}

// Create never overwrites: a second profile with the same name, or one the file system takes for it, is refused
// with an *ExistsError and the first stays as it was.
func TestCreateNeverOverwrites(t *testing.T) {
	s, insensitive := caseStore(t)
	if err := s.Create(named("Bob", "bob@clinic.example")); err != nil {
		t.Fatal(err)
	}
	var ee *ExistsError
	if err := s.Create(named("Bob", "intruder@clinic.example")); !errors.As(err, &ee) || !errors.Is(err, ErrExists) ||
		ee.Name != "Bob" || ee.Existing != "Bob" {
		t.Fatalf("second Create = %v, want *ExistsError{Bob, Bob}", err)
	}
	err := s.Create(named("bob", "lower@clinic.example"))
	if insensitive {
		if !errors.As(err, &ee) || ee.Name != "bob" || ee.Existing != "Bob" {
			t.Fatalf("Create bob next to Bob = %v, want *ExistsError{bob, Bob}", err)
		}
		if !strings.Contains(err.Error(), `"Bob"`) {
			t.Errorf("error %q does not name the existing profile", err)
		}
	} else if err != nil {
		t.Fatalf("Create bob next to Bob on a case-sensitive file system: %v", err)
	}
	e, err := s.Load("Bob")
	if err != nil || e.Profile.Address != "bob@clinic.example" {
		t.Fatalf("Bob after refused creates: %+v, %v", e, err)
	}
	// Renaming onto another profile is refused too, leaving both.
	if err := s.Create(named("Carol", "carol@clinic.example")); err != nil {
		t.Fatal(err)
	}
	if insensitive {
		if err := s.Rename("Carol", named("BOB", "carol@clinic.example")); !errors.Is(err, ErrExists) {
			t.Fatalf("Rename Carol -> BOB = %v, want ErrExists", err)
		}
	}
	if err := s.Rename("Carol", named("Bob", "carol@clinic.example")); !errors.Is(err, ErrExists) {
		t.Fatalf("Rename Carol -> Bob = %v, want ErrExists", err)
	}
	for name, addr := range map[string]string{"Bob": "bob@clinic.example", "Carol": "carol@clinic.example"} {
		if e, err := s.Load(name); err != nil || e.Profile.Address != addr {
			t.Errorf("%s after refused renames: %+v, %v", name, e, err)
		}
	}
}

// Concurrent creates of one name: exactly one wins, the others get ErrExists, the file holds the winner.
func TestCreateRace(t *testing.T) {
	s, _ := caseStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Create(named("Dana", "dana"+string(rune('a'+i))+"@clinic.example"))
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("creates %d and %d both succeeded", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, ErrExists):
			t.Fatalf("create %d: %v", i, err)
		}
	}
	e, err := s.Load("Dana")
	if won < 0 || err != nil || e.Profile.Address != "dana"+string(rune('a'+won))+"@clinic.example" {
		t.Fatalf("winner %d, Load = %+v, %v", won, e, err)
	}
}

// Renaming a system preset (no user file of that name) creates the user profile and leaves the preset alone.
func TestRenamePreset(t *testing.T) {
	s, sys := newStore(t)
	writeFile(t, filepath.Join(sys, "clinic.json"), presetJSON("clinic", 993))
	if err := s.Rename("clinic", named("my clinic", "me@clinic.example")); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Name != "clinic" || !list[0].ReadOnly || list[1].Name != "my clinic" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}
