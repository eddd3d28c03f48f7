package profile

// PresetID identifies a built-in provider preset; the GUI shows the words "profile.preset.<id>".
type PresetID string

// Built-in presets.
const (
	PresetHealth  PresetID = "health_messaging" // French secure health messaging (MSSanté operators)
	PresetGeneric PresetID = "generic"          // any provider with current best practice (RFC 8314)
)

// Preset is a template for a new profile: everything but the address and the server host names, which come from
// autoconfiguration or are guessed by FromPreset.
type Preset struct {
	ID        PresetID
	TLSPolicy TLSPolicy
	Login     Login
	// IMAP and SMTP carry port and security; Host is empty.
	IMAP, SMTP Server
}

// Presets returns the built-in presets, health messaging first. The slice is a fresh copy.
//
//   - health messaging: TLS policy mssante, IMAP 993 implicit TLS, SMTP 465 implicit TLS, login auto (SASL EXTERNAL
//     when offered, else the operator's LOGIN/PLAIN);
//   - generic: TLS policy default, IMAP 993 implicit TLS, SMTP 587 STARTTLS, login auto.
func Presets() []Preset {
	return []Preset{
		{
			ID: PresetHealth, TLSPolicy: PolicyMSSante, Login: LoginAuto,
			IMAP: Server{Port: 993, Security: Implicit},
			SMTP: Server{Port: 465, Security: Implicit},
		},
		{
			ID: PresetGeneric, TLSPolicy: PolicyDefault, Login: LoginAuto,
			IMAP: Server{Port: 993, Security: Implicit},
			SMTP: Server{Port: 587, Security: StartTLS},
		},
	}
}

// PresetByID returns the built-in preset with this id, and false when there is none.
func PresetByID(id PresetID) (Preset, bool) {
	for _, p := range Presets() {
		if p.ID == id {
			return p, true
		}
	}
	return Preset{}, false
}

// FromPreset returns a valid profile for address built from preset: the server host names are guessed as
// imap.<domain> and smtp.<domain> (the caller replaces them with what autoconfig finds), Name is
// SuggestName(address). Errors: *ValidationError (field "address", reasons missing / bad_address; or any field
// when preset itself is incomplete).
func FromPreset(preset Preset, address string) (*Profile, error) {
	if address == "" {
		return nil, &ValidationError{Field: "address", Reason: ReasonMissing}
	}
	_, domain, ok := SplitAddress(address)
	if !ok {
		return nil, &ValidationError{Field: "address", Reason: ReasonBadAddress}
	}
	p := &Profile{
		Version:   Version,
		Name:      SuggestName(address),
		Address:   address,
		IMAP:      Server{Host: "imap." + domain, Port: preset.IMAP.Port, Security: preset.IMAP.Security},
		SMTP:      Server{Host: "smtp." + domain, Port: preset.SMTP.Port, Security: preset.SMTP.Security},
		Login:     preset.Login,
		TLSPolicy: preset.TLSPolicy,
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}
