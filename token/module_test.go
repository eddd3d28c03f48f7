package token

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

type fakeInfo struct{ mode fs.FileMode }

func (f fakeInfo) Name() string       { return "x" }
func (f fakeInfo) Size() int64        { return 1 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

// fakeStat knows regular files and directories by path.
func fakeStat(files []string, dirs ...string) statFunc {
	return func(p string) (fs.FileInfo, error) {
		if slices.Contains(files, p) {
			return fakeInfo{}, nil
		}
		if slices.Contains(dirs, p) {
			return fakeInfo{mode: fs.ModeDir}, nil
		}
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
}

func noEnv(string) string { return "" }

func TestKnownModulesTable(t *testing.T) {
	tests := []struct {
		name  string
		goos  string
		files []string
		dirs  []string
		env   func(string) string
		want  []Module
	}{
		{name: "nothing installed", goos: "linux"},
		{name: "debian opensc and softhsm", goos: "linux",
			files: []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"},
			want:  []Module{{"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "opensc"}, {"/usr/lib/softhsm/libsofthsm2.so", "softhsm2"}}},
		{name: "cryptolib first", goos: "linux",
			files: []string{"/usr/lib/opensc-pkcs11.so", "/usr/lib64/libcps3_pkcs11_lux.so", "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"},
			want:  []Module{{"/usr/lib64/libcps3_pkcs11_lux.so", "cryptolib-cps"}, {"/usr/lib/opensc-pkcs11.so", "opensc"}, {"/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so", "p11-kit-proxy"}}},
		{name: "arm64 opensc", goos: "linux", files: []string{"/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so"},
			want: []Module{{"/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so", "opensc"}}},
		{name: "directory is not a module", goos: "linux", dirs: []string{"/usr/lib/opensc-pkcs11.so"}},
		{name: "macos homebrew", goos: "darwin", files: []string{"/opt/homebrew/lib/opensc-pkcs11.so", "/usr/local/lib/libcps3_pkcs11_osx.dylib"},
			want: []Module{{"/usr/local/lib/libcps3_pkcs11_osx.dylib", "cryptolib-cps"}, {"/opt/homebrew/lib/opensc-pkcs11.so", "opensc"}}},
		{name: "windows windir", goos: "windows", files: []string{`D:\Win\System32\cps3_pkcs11_w64.dll`, `C:\Program Files\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll`},
			env:  func(k string) string { return map[string]string{"WINDIR": `D:\Win`}[k] },
			want: []Module{{`D:\Win\System32\cps3_pkcs11_w64.dll`, "cryptolib-cps"}, {`C:\Program Files\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll`, "opensc"}}},
		{name: "windows ProgramFiles elsewhere", goos: "windows", files: []string{`E:\Apps\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll`, `C:\Windows\System32\opensc-pkcs11.dll`},
			env:  func(k string) string { return map[string]string{"ProgramFiles": `E:\Apps`}[k] },
			want: []Module{{`E:\Apps\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll`, "opensc"}, {`C:\Windows\System32\opensc-pkcs11.dll`, "opensc"}}},
		{name: "windows default windir", goos: "windows", files: []string{`C:\Windows\System32\cps3_pkcs11_w64.dll`},
			want: []Module{{`C:\Windows\System32\cps3_pkcs11_w64.dll`, "cryptolib-cps"}}},
		{name: "unknown os", goos: "plan9", files: []string{"/usr/lib/opensc-pkcs11.so"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = noEnv
			}
			got := knownModules(tt.goos, fakeStat(tt.files, tt.dirs...), env)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResolveModuleTable(t *testing.T) {
	stat := fakeStat([]string{"/usr/lib/softhsm/libsofthsm2.so", "/opt/x/my.so"}, "/opt/dir")
	tests := []struct {
		name    string
		path    string
		stat    statFunc
		want    Module
		wantErr error
	}{
		{name: "default", stat: stat, want: Module{"/usr/lib/softhsm/libsofthsm2.so", "softhsm2"}},
		{name: "default none", stat: fakeStat(nil), wantErr: ErrModuleNotFound},
		{name: "custom", path: "/opt/x/my.so", stat: stat, want: Module{"/opt/x/my.so", "custom"}},
		{name: "missing", path: "/opt/x/none.so", stat: stat, wantErr: ErrModuleNotFound},
		{name: "directory", path: "/opt/dir", stat: stat, wantErr: ErrModuleNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveModule(tt.path, "linux", tt.stat, noEnv)
			if tt.wantErr != nil {
				var me *ModuleError
				if !errors.As(err, &me) || !errors.Is(err, tt.wantErr) || me.Path != tt.path {
					t.Fatalf("err = %#v, want *ModuleError{%q} wrapping %v", err, tt.path, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestResolveModuleReal(t *testing.T) {
	if _, err := ResolveModule("/nonexistent/lib.so"); !errors.Is(err, ErrModuleNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
	if _, err := ResolveModule(os.TempDir()); !errors.Is(err, ErrModuleNotFound) {
		t.Fatalf("directory: err = %v", err)
	}
}

func TestAgentEnvDropsSecrets(t *testing.T) {
	got := agentEnv([]string{"PATH=/bin", "CARDMAIL_PIN=1234", "CARDMAIL_PASSWORD=x", "CARDMAIL_PINX=keep", "HOME=/root"})
	want := []string{"PATH=/bin", "CARDMAIL_PINX=keep", "HOME=/root"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("agentEnv = %v, want %v", got, want)
	}
}
