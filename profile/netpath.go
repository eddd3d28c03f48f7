package profile

import (
	"strconv"
	"strings"
)

// NetworkPath reports whether f names a file on another machine: a UNC path (\\server\share\..., //server/share/...,
// \\?\UNC\server\...), a \\?\ or \\.\ path that is not on a drive letter, or, on Windows, a path on a drive that
// Windows reports as remote (a mapped network drive). System presets may not name such files (see ValidatePreset):
// whoever controls the share would control the card module CardMail loads or the certificates it trusts.
func NetworkPath(f string) bool {
	s := strings.ReplaceAll(f, "/", `\`)
	if strings.HasPrefix(s, `\\?\`) || strings.HasPrefix(s, `\\.\`) {
		rest := s[4:]
		return !(len(rest) >= 3 && isASCIILetter(rest[0]) && rest[1] == ':' && rest[2] == '\\')
	}
	if strings.HasPrefix(s, `\\`) {
		return true
	}
	return len(s) >= 3 && isASCIILetter(s[0]) && s[1] == ':' && s[2] == '\\' && remoteDrive(s[0])
}

// ValidatePreset is Validate plus the rules for system presets, which every user of the machine trusts: the CA
// files and the PKCS#11 module may not be on the network (NetworkPath; ValidationError reason network_path).
func (p *Profile) ValidatePreset() error {
	if err := p.Validate(); err != nil {
		return err
	}
	for i, f := range p.CAFiles {
		if NetworkPath(f) {
			return &ValidationError{Field: "ca_files[" + strconv.Itoa(i) + "]", Reason: ReasonNetworkPath}
		}
	}
	if p.PKCS11Module != "" && NetworkPath(p.PKCS11Module) {
		return &ValidationError{Field: "pkcs11_module", Reason: ReasonNetworkPath}
	}
	return nil
}
