package profile

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Access rights that let an account change a preset (strict: the file or the preset directory: write or append
// data, that is add a file to a directory, delete children, delete, change the ACL or the owner, and the generic
// write and all rights) or replace an entry of a directory above it (delete children, delete, ACL, owner,
// generic all). Adding a folder to a directory above is allowed: every user may create folders in %ProgramData%.
const (
	fileWriteData    = 0x0002
	fileAppendData   = 0x0004
	fileDeleteChild  = 0x0040
	rightDelete      = 0x00010000
	rightWriteDAC    = 0x00040000
	rightWriteOwner  = 0x00080000
	rightGenericAll  = 0x10000000
	rightGenericWrit = 0x40000000

	strictRights   = fileWriteData | fileAppendData | fileDeleteChild | rightDelete | rightWriteDAC | rightWriteOwner | rightGenericAll | rightGenericWrit
	ancestorRights = fileDeleteChild | rightDelete | rightWriteDAC | rightWriteOwner | rightGenericAll
)

// trustedSIDs are the accounts that may write presets: SYSTEM, Administrators, TrustedInstaller, and the account
// running CardMail (what only it can change hurts only itself). OWNER RIGHTS (S-1-3-4) stands for the owner, whose
// own trust is checked first.
var trustedSIDs = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{
		"S-1-5-18":     true, // SYSTEM
		"S-1-5-32-544": true, // BUILTIN\Administrators
		"S-1-5-80-956008885-3425701886-2074300454-2211669396-1681616496": true, // NT SERVICE\TrustedInstaller
		"S-1-3-4": true, // OWNER RIGHTS
	}
	if u, err := windows.GetCurrentProcessToken().GetTokenUser(); err == nil {
		m[u.User.Sid.String()] = true
	}
	return m
})

// checkOwnerAndAccess reads path's owner and DACL (GetNamedSecurityInfo): the owner must be trusted (an owner may
// always rewrite the ACL), and no allow entry that applies to path itself may give an untrusted account the rights
// above. A NULL DACL gives everyone everything. Deny entries are not credited: the check may only err on the safe
// side.
func checkOwnerAndAccess(path string, strict bool) error {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return &UnsafePresetError{Path: path, Reason: "cannot be checked: " + err.Error()}
	}
	trusted := trustedSIDs()
	owner, _, err := sd.Owner()
	if err != nil || owner == nil {
		return &UnsafePresetError{Path: path, Reason: "has no owner"}
	}
	if !trusted[owner.String()] {
		return &UnsafePresetError{Path: path, Reason: "is owned by " + account(owner)}
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		return &UnsafePresetError{Path: path, Reason: "has no access list: everyone may change it"}
	}
	rights := uint32(ancestorRights)
	if strict {
		rights = strictRights
	}
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return &UnsafePresetError{Path: path, Reason: "has an unreadable access list: " + err.Error()}
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE || ace.Header.AceFlags&windows.INHERIT_ONLY_ACE != 0 {
			continue
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		if uint32(ace.Mask)&rights != 0 && !trusted[sid.String()] {
			return &UnsafePresetError{Path: path, Reason: fmt.Sprintf("lets %s change it (rights %#x)", account(sid), uint32(ace.Mask))}
		}
	}
	return nil
}

// account names a SID for the error: "BUILTIN\Users (S-1-5-32-545)", or the SID alone.
func account(sid *windows.SID) string {
	if name, domain, _, err := sid.LookupAccount(""); err == nil && name != "" {
		if domain != "" {
			name = domain + `\` + name
		}
		return name + " (" + sid.String() + ")"
	}
	return sid.String()
}
