package profile

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func validProfile() *Profile {
	return &Profile{
		Version:      Version,
		Name:         "cabinet",
		Address:      "dr.martin@mssante.example.fr",
		IMAP:         Server{Host: "imap.mssante.example.fr", Port: 993, Security: Implicit},
		SMTP:         Server{Host: "smtp.mssante.example.fr", Port: 587, Security: StartTLS},
		Login:        LoginAuto,
		TLSPolicy:    PolicyMSSante,
		CAFiles:      []string{"/etc/cardmail/igc-sante.pem", `C:\ProgramData\CardMail\ca.pem`},
		CertSHA256:   strings.Repeat("ab", 32),
		PKCS11Module: "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
	}
}

const goodJSON = `{"version":1,"name":"cabinet","address":"a@example.org",
 "imap":{"host":"imap.example.org","port":993,"security":"implicit"},
 "smtp":{"host":"smtp.example.org","port":465,"security":"implicit"},
 "login":"auto","tls_policy":"default"}`

// replace returns goodJSON with old replaced by new (once; the test fails if old is absent).
func replace(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(goodJSON, old) {
		t.Fatalf("test bug: %q not in goodJSON", old)
	}
	return strings.Replace(goodJSON, old, new, 1)
}

func TestParse(t *testing.T) {
	type want struct {
		field, reason string // *ValidationError
		syntax        bool   // *SyntaxError
		version       int    // *VersionError with this version; -1 for Missing
		tooLarge      bool
	}
	cases := []struct {
		name string
		data string
		want *want // nil: valid
	}{
		{"good", goodJSON, nil},
		{"optional members", replace(t, `"tls_policy":"default"`, `"tls_policy":"mssante","ca_files":["/a.pem"],"cert_sha256":"`+strings.Repeat("0F", 32)+`","pkcs11_module":"/m.so"`), nil},
		{"ipv4 host", replace(t, `"host":"imap.example.org"`, `"host":"127.0.0.1"`), nil},
		{"ipv6 host", replace(t, `"host":"imap.example.org"`, `"host":"::1"`), nil},
		{"starttls", replace(t, `"port":465,"security":"implicit"`, `"port":587,"security":"starttls"`), nil},
		{"empty", ``, &want{syntax: true}},
		{"not json", `hello`, &want{syntax: true}},
		{"truncated", goodJSON[:40], &want{syntax: true}},
		{"array", `[1,2]`, &want{syntax: true}},
		{"null", `null`, &want{syntax: true}},
		{"trailing garbage", goodJSON + `x`, &want{syntax: true}},
		{"no version", replace(t, `"version":1,`, ``), &want{version: -1}},
		{"version string", replace(t, `"version":1`, `"version":"1"`), &want{version: -1}},
		{"version float", replace(t, `"version":1`, `"version":1.5`), &want{version: -1}},
		{"version 2", replace(t, `"version":1`, `"version":2`), &want{version: 2}},
		{"version 0", replace(t, `"version":1`, `"version":0`), &want{version: 0}},
		{"missing name", replace(t, `"name":"cabinet",`, ``), &want{field: "name", reason: ReasonMissing}},
		{"bad name slash", replace(t, `"name":"cabinet"`, `"name":"../etc/passwd"`), &want{field: "name", reason: ReasonBadName}},
		{"bad name device", replace(t, `"name":"cabinet"`, `"name":"nul.txt"`), &want{field: "name", reason: ReasonBadName}},
		{"missing address", replace(t, `"address":"a@example.org",`, ``), &want{field: "address", reason: ReasonMissing}},
		{"bad address no at", replace(t, `"address":"a@example.org"`, `"address":"example.org"`), &want{field: "address", reason: ReasonBadAddress}},
		{"bad address display name", replace(t, `"address":"a@example.org"`, `"address":"A <a@example.org>"`), &want{field: "address", reason: ReasonBadAddress}},
		{"bad address ip domain", replace(t, `"address":"a@example.org"`, `"address":"a@127.0.0.1"`), &want{field: "address", reason: ReasonBadAddress}},
		{"missing imap", replace(t, `"imap":{"host":"imap.example.org","port":993,"security":"implicit"},`, ``), &want{field: "imap.host", reason: ReasonMissing}},
		{"imap not object", replace(t, `"imap":{"host":"imap.example.org","port":993,"security":"implicit"}`, `"imap":"imap.example.org:993"`), &want{field: "imap", reason: ReasonBadType}},
		{"bad host", replace(t, `"host":"imap.example.org"`, `"host":"imap example.org"`), &want{field: "imap.host", reason: ReasonBadHost}},
		{"host with port", replace(t, `"host":"imap.example.org"`, `"host":"imap.example.org:993"`), &want{field: "imap.host", reason: ReasonBadHost}},
		{"host zone", replace(t, `"host":"imap.example.org"`, `"host":"fe80::1%eth0"`), &want{field: "imap.host", reason: ReasonBadHost}},
		{"port zero", replace(t, `"port":993`, `"port":0`), &want{field: "imap.port", reason: ReasonMissing}},
		{"port high", replace(t, `"port":993`, `"port":65536`), &want{field: "imap.port", reason: ReasonBadPort}},
		{"port negative", replace(t, `"port":465`, `"port":-1`), &want{field: "smtp.port", reason: ReasonBadPort}},
		{"port string", replace(t, `"port":993`, `"port":"993"`), &want{field: "imap.port", reason: ReasonBadType}},
		{"port huge", replace(t, `"port":993`, `"port":1e400`), &want{field: "imap.port", reason: ReasonBadType}},
		{"bad security", replace(t, `"port":465,"security":"implicit"`, `"port":465,"security":"ssl"`), &want{field: "smtp.security", reason: ReasonBadSecurity}},
		{"missing security", replace(t, `"port":465,"security":"implicit"`, `"port":465`), &want{field: "smtp.security", reason: ReasonMissing}},
		{"bad login", replace(t, `"login":"auto"`, `"login":"oauth2"`), &want{field: "login", reason: ReasonBadLogin}},
		{"missing login", replace(t, `"login":"auto",`, ``), &want{field: "login", reason: ReasonMissing}},
		{"bad policy", replace(t, `"tls_policy":"default"`, `"tls_policy":"insecure"`), &want{field: "tls_policy", reason: ReasonBadPolicy}},
		{"relative ca", replace(t, `"tls_policy":"default"`, `"tls_policy":"default","ca_files":["/ok.pem","ca.pem"]`), &want{field: "ca_files[1]", reason: ReasonBadPath}},
		{"ca not list", replace(t, `"tls_policy":"default"`, `"tls_policy":"default","ca_files":"/a.pem"`), &want{field: "ca_files", reason: ReasonBadType}},
		{"short fingerprint", replace(t, `"tls_policy":"default"`, `"tls_policy":"default","cert_sha256":"abcd"`), &want{field: "cert_sha256", reason: ReasonBadFingerprint}},
		{"relative module", replace(t, `"tls_policy":"default"`, `"tls_policy":"default","pkcs11_module":"opensc-pkcs11.so"`), &want{field: "pkcs11_module", reason: ReasonBadPath}},
		{"password", replace(t, `"login":"auto"`, `"login":"plain","password":"x"`), &want{field: "password", reason: ReasonSecretNotAllowed}},
		{"PIN uppercase", replace(t, `"login":"auto"`, `"login":"auto","PIN":"1234"`), &want{field: "PIN", reason: ReasonSecretNotAllowed}},
		{"password in server", replace(t, `"port":993,`, `"port":993,"password":"",`), &want{field: "imap.password", reason: ReasonSecretNotAllowed}},
		{"unknown member", replace(t, `"login":"auto"`, `"login":"auto","tls_polcy":"mssante"`), &want{field: "tls_polcy", reason: ReasonUnknownField}},
		{"case-folded member", replace(t, `"login":"auto"`, `"Login":"auto"`), &want{field: "Login", reason: ReasonUnknownField}},
		{"too large", goodJSON + strings.Repeat(" ", MaxFileSize), &want{tooLarge: true}},
		{"version 1.0", replace(t, `"version":1`, `"version":1.0`), &want{version: -1}},
		{"version 1e0", replace(t, `"version":1`, `"version":1e0`), &want{version: -1}},
		{"name with NUL", replace(t, `"name":"cabinet"`, `"name":"cab\u0000inet"`), &want{field: "name", reason: ReasonBadName}},
		{"imap null", replace(t, `"imap":{"host":"imap.example.org","port":993,"security":"implicit"}`, `"imap":null`), &want{field: "imap.host", reason: ReasonMissing}},
		{"all-digit host", replace(t, `"host":"imap.example.org"`, `"host":"1.2.3"`), &want{field: "imap.host", reason: ReasonBadHost}},
		// Cases found by fuzzing:
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.data))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if p.Version != Version {
					t.Fatalf("version %d", p.Version)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted %q: %+v", tc.data, p)
			}
			if p != nil {
				t.Fatalf("Parse returned a profile with an error")
			}
			w := tc.want
			var ve *ValidationError
			var se *SyntaxError
			var vr *VersionError
			switch {
			case w.tooLarge:
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err %v, want ErrTooLarge", err)
				}
			case w.syntax:
				if !errors.As(err, &se) {
					t.Fatalf("err %T %v, want *SyntaxError", err, err)
				}
			case w.field != "":
				if !errors.As(err, &ve) || ve.Field != w.field || ve.Reason != w.reason {
					t.Fatalf("err %T %v, want ValidationError{%s %s}", err, err, w.field, w.reason)
				}
			default:
				if !errors.As(err, &vr) {
					t.Fatalf("err %T %v, want *VersionError", err, err)
				}
				if (w.version == -1) != vr.Missing || w.version != -1 && vr.Version != w.version {
					t.Fatalf("err %+v, want version %d", vr, w.version)
				}
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	p := validProfile()
	data, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, data)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip:\n%+v\n%+v", p, q)
	}
	for _, secret := range []string{"password", "pin"} {
		if strings.Contains(strings.ToLower(string(data)), `"`+secret+`"`) {
			t.Fatalf("marshalled profile has a %s member:\n%s", secret, data)
		}
	}
	bad := validProfile()
	bad.IMAP.Port = 70000
	if _, err := Marshal(bad); err == nil {
		t.Fatal("Marshal accepted an invalid profile")
	}
}

func TestValidName(t *testing.T) {
	cases := map[string]bool{
		"cabinet": true, "Dr Martin": true, "a@b.example": true, "x.y_z-1+2": true, "9": true,
		"": false, ".hidden": false, "-x": false, "a/b": false, `a\b`: false, "a:b": false, "end.": false,
		"end ": false, "CON": false, "con.json": false, "Lpt1": false, "com9.x": false, "COM": true, "console": true,
		"héloïse": false, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, "a\x00": false,
	}
	for name, want := range cases {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSuggestName(t *testing.T) {
	cases := map[string]string{
		"dr.martin@mssante.example.fr": "dr.martin@mssante.example.fr",
		"héloïse@example.org":          "h--lo--se@example.org",
		"..":                           "",
		"con":                          "",
		"a/b":                          "a-b",
	}
	for in, want := range cases {
		if got := SuggestName(in); got != want {
			t.Errorf("SuggestName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPresets(t *testing.T) {
	ps := Presets()
	if len(ps) != 2 || ps[0].ID != PresetHealth || ps[1].ID != PresetGeneric {
		t.Fatalf("presets %+v", ps)
	}
	ps[0].IMAP.Port = 1 // a copy: must not change the next call
	health, ok := PresetByID(PresetHealth)
	// Issue 13 item 4: the MSSanté client specification's base is STARTTLS on 143 and 587, implicit TLS the
	// alternative.
	if !ok || health.IMAP.Port != 143 || health.Alternative != Implicit {
		t.Fatalf("PresetByID(health) = %+v %v", health, ok)
	}
	cases := []struct {
		preset Preset
		want   Profile
	}{
		{health, Profile{Version: 1, Name: "dr@mssante.example.fr", Address: "dr@mssante.example.fr",
			IMAP: Server{"imap.mssante.example.fr", 143, StartTLS}, SMTP: Server{"smtp.mssante.example.fr", 587, StartTLS},
			Login: LoginAuto, TLSPolicy: PolicyMSSante}},
		{Presets()[1], Profile{Version: 1, Name: "dr@mssante.example.fr", Address: "dr@mssante.example.fr",
			IMAP: Server{"imap.mssante.example.fr", 993, Implicit}, SMTP: Server{"smtp.mssante.example.fr", 587, StartTLS},
			Login: LoginAuto, TLSPolicy: PolicyDefault}},
	}
	for _, tc := range cases {
		p, err := FromPreset(tc.preset, "dr@mssante.example.fr")
		if err != nil {
			t.Fatalf("FromPreset(%s): %v", tc.preset.ID, err)
		}
		if !reflect.DeepEqual(*p, tc.want) {
			t.Errorf("FromPreset(%s):\n got %+v\nwant %+v", tc.preset.ID, *p, tc.want)
		}
	}
	for _, addr := range []string{"", "nobody", "a@b@", "x@-bad-.org"} {
		_, err := FromPreset(health, addr)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "address" {
			t.Errorf("FromPreset(%q) err %v, want address ValidationError", addr, err)
		}
	}
	if _, err := FromPreset(Preset{ID: "broken"}, "a@example.org"); err == nil {
		t.Error("FromPreset accepted an empty preset")
	}
	if g, n := GuessHost(ProtocolSMTP, "dr@MSSante.example.fr"), GuessHost(ProtocolIMAP, "nobody"); g != "smtp.MSSante.example.fr" || n != "" {
		t.Errorf("GuessHost = %q, %q", g, n)
	}
}

func TestStandardPort(t *testing.T) {
	got := []int{StandardPort(ProtocolIMAP, Implicit), StandardPort(ProtocolIMAP, StartTLS),
		StandardPort(ProtocolSMTP, Implicit), StandardPort(ProtocolSMTP, StartTLS)}
	if !reflect.DeepEqual(got, []int{993, 143, 465, 587}) {
		t.Errorf("standard ports %v", got)
	}
}

func TestSameConnection(t *testing.T) {
	base := &Profile{Version: 1, Name: "a", Address: "a@b.example", IMAP: Server{"i", 993, Implicit},
		SMTP: Server{"s", 587, StartTLS}, Login: LoginAuto, TLSPolicy: PolicyDefault, CertSHA256: strings.Repeat("AB", 32)}
	same := base.Clone()
	same.Name, same.CertSHA256, same.CAFiles = "other name", strings.Repeat("ab", 32), []string{}
	if !base.SameConnection(same) {
		t.Error("name, fingerprint case and an empty CA list changed the connection")
	}
	for _, change := range []func(*Profile){
		func(p *Profile) { p.Address = "c@b.example" }, func(p *Profile) { p.IMAP.Port = 143 },
		func(p *Profile) { p.SMTP.Security = Implicit }, func(p *Profile) { p.Login = LoginPlain },
		func(p *Profile) { p.TLSPolicy = PolicyMSSante }, func(p *Profile) { p.CAFiles = []string{"/ca.pem"} },
		func(p *Profile) { p.CertSHA256 = "" }, func(p *Profile) { p.PKCS11Module = "/m.so" },
	} {
		other := base.Clone()
		change(other)
		if base.SameConnection(other) {
			t.Errorf("%+v counted as the same connection as %+v", *other, *base)
		}
	}
}

func TestSystemDirTable(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		goos string
		env  map[string]string
		want []string
	}{
		{"linux", nil, []string{"/etc/cardmail/profiles"}},
		{"freebsd", nil, []string{"/etc/cardmail/profiles"}},
		{"darwin", nil, []string{"/Library/Application Support/CardMail/profiles"}},
		{"windows", map[string]string{"ProgramData": `C:\ProgramData`}, []string{`C:\ProgramData\CardMail\profiles`}},
		{"windows", map[string]string{"ProgramData": `D:\Data\`}, []string{`D:\Data\CardMail\profiles`}},
		{"windows", nil, nil},
	}
	for _, tc := range cases {
		if got := systemDirs(tc.goos, env(tc.env)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("systemDirs(%s, %v) = %q, want %q", tc.goos, tc.env, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodJSON))
	data, _ := Marshal(validProfile())
	f.Add(data)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2,"name":"x"}`))
	f.Add([]byte(`{"version":1,"imap":{"password":1}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("profile and error")
			}
			return
		}
		// Whatever Parse accepts is valid and survives a round trip unchanged.
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid profile: %v", err)
		}
		out, err := Marshal(p)
		if err != nil {
			t.Fatalf("Marshal of a parsed profile: %v", err)
		}
		q, err := Parse(out)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, p, q)
		}
	})
}
