package token

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// Module is a PKCS#11 module file. Name is a short technical name of the middleware ("cryptolib-cps",
// "opensc", "p11-kit-proxy", "softhsm2", or "custom" for a path given by the user).
type Module struct {
	Path string
	Name string
}

// candidate is one place a known module may be installed.
type candidate struct {
	name string
	path string
}

// candidates lists, per GOOS and in preference order, where known modules are installed: Cryptolib CPS (the
// French health professional card middleware) first, then OpenSC, the p11-kit proxy and SoftHSM2.
// "%WINDIR%" and "%ProgramFiles%" are expanded from the environment on Windows (defaults C:\Windows and
// C:\Program Files). OpenSC's current MSI installs only under %ProgramFiles%\OpenSC Project; System32 is where older
// installers put it. The 32-bit Cryptolib (SysWOW64\cps3_pkcs11_w32.dll) is left out: a 64-bit process cannot load it.
var candidates = map[string][]candidate{
	"linux": {
		{"cryptolib-cps", "/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so"},
		{"cryptolib-cps", "/usr/lib64/libcps3_pkcs11_lux.so"},
		{"opensc", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"},
		{"opensc", "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so"},
		{"opensc", "/usr/lib64/opensc-pkcs11.so"},
		{"opensc", "/usr/lib/opensc-pkcs11.so"},
		{"p11-kit-proxy", "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"},
		{"p11-kit-proxy", "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so"},
		{"p11-kit-proxy", "/usr/lib64/p11-kit-proxy.so"},
		{"p11-kit-proxy", "/usr/lib/p11-kit-proxy.so"},
		{"softhsm2", "/usr/lib/softhsm/libsofthsm2.so"},
		{"softhsm2", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"},
		{"softhsm2", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"},
		{"softhsm2", "/usr/lib64/softhsm/libsofthsm2.so"},
		{"softhsm2", "/usr/lib64/pkcs11/libsofthsm2.so"},
	},
	"darwin": {
		{"cryptolib-cps", "/usr/local/lib/libcps3_pkcs11_osx.dylib"},
		{"opensc", "/Library/OpenSC/lib/opensc-pkcs11.so"},
		{"opensc", "/usr/local/lib/opensc-pkcs11.so"},
		{"opensc", "/opt/homebrew/lib/opensc-pkcs11.so"},
		{"p11-kit-proxy", "/usr/local/lib/p11-kit-proxy.dylib"},
		{"p11-kit-proxy", "/opt/homebrew/lib/p11-kit-proxy.dylib"},
		{"softhsm2", "/usr/local/lib/softhsm/libsofthsm2.so"},
		{"softhsm2", "/opt/homebrew/lib/softhsm/libsofthsm2.so"},
	},
	"windows": {
		{"cryptolib-cps", `%WINDIR%\System32\cps3_pkcs11_w64.dll`},
		{"opensc", `%ProgramFiles%\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll`},
		{"opensc", `%WINDIR%\System32\opensc-pkcs11.dll`},
		{"softhsm2", `C:\SoftHSM2\lib\softhsm2-x64.dll`},
	},
}

// statFunc is os.Stat; tests replace it through knownModules.
type statFunc func(string) (fs.FileInfo, error)

// KnownModules returns the known modules installed on this machine, in preference order. Safe for concurrent use.
func KnownModules() []Module {
	return knownModules(runtime.GOOS, os.Stat, os.Getenv)
}

func knownModules(goos string, stat statFunc, getenv func(string) string) []Module {
	var out []Module
	for _, c := range candidates[goos] {
		p := c.path
		if goos == "windows" {
			p = replacePrefix(p, "%WINDIR%", cmp.Or(getenv("WINDIR"), `C:\Windows`))
			p = replacePrefix(p, "%ProgramFiles%", cmp.Or(getenv("ProgramFiles"), `C:\Program Files`))
		}
		if fi, err := stat(p); err == nil && fi.Mode().IsRegular() {
			out = append(out, Module{Path: p, Name: c.name})
		}
	}
	return out
}

func replacePrefix(s, prefix, with string) string {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return with + s[len(prefix):]
	}
	return s
}

// ResolveModule picks the module to load. An empty path means the first of KnownModules; otherwise the path must
// name an existing regular file. Errors are *ModuleError wrapping ErrModuleNotFound. Whether the file really is a
// PKCS#11 module is only known when the agent loads it (Start returns *ModuleError wrapping ErrNotPKCS11).
func ResolveModule(path string) (Module, error) {
	return resolveModule(path, runtime.GOOS, os.Stat, os.Getenv)
}

func resolveModule(path, goos string, stat statFunc, getenv func(string) string) (Module, error) {
	if path == "" {
		known := knownModules(goos, stat, getenv)
		if len(known) == 0 {
			return Module{}, &ModuleError{Err: ErrModuleNotFound}
		}
		return known[0], nil
	}
	fi, err := stat(path)
	if err != nil {
		return Module{}, &ModuleError{Path: path, Err: fmt.Errorf("%w: %w", ErrModuleNotFound, err)}
	}
	if !fi.Mode().IsRegular() {
		return Module{}, &ModuleError{Path: path, Err: fmt.Errorf("%w: not a regular file (%s)", ErrModuleNotFound, fi.Mode().Type())}
	}
	return Module{Path: path, Name: nameFor(path, goos)}, nil
}

// nameFor returns the known name of a module path, or "custom".
func nameFor(path, goos string) string {
	base := filepath.Base(path)
	for _, c := range candidates[goos] {
		if c.path == path || filepath.Base(c.path) == base {
			return c.name
		}
	}
	return "custom"
}
