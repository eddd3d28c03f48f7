package profile

// PresetID identifies a built-in provider preset; the GUI shows the words "profile.preset.<id>".
type PresetID string

// Built-in presets.
const (
	PresetHealth  PresetID = "health_messaging" // French secure health messaging (MSSanté operators)
	PresetGeneric PresetID = "generic"          // any provider with current best practice (RFC 8314)
)

// Preset is a template for a new profile: everything but the address and the server host names, which come from
// autoconfiguration, from the person, or are guessed by FromPreset.
type Preset struct {
	ID        PresetID
	TLSPolicy TLSPolicy
	Login     Login
	// IMAP and SMTP carry port and security; Host is empty.
	IMAP, SMTP Server
	// Alternative is the other security mode the provider's specification allows for both servers, on their
	// StandardPort ("" for none): a client offers it, it does not choose it.
	Alternative Security
}

// Presets returns the built-in presets, health messaging first. The slice is a fresh copy.
//
//   - health messaging: the base of the MSSanté client specification (ANS, « Référentiel #2 – Clients de
//     messageries sécurisées de santé »): STARTTLS on IMAP 143 and submission 587, with implicit TLS (993, 465)
//     as the alternative some operators use; TLS policy mssante; login auto (SASL EXTERNAL when offered, else the
//     operator's LOGIN/PLAIN);
//   - generic: TLS policy default, IMAP 993 implicit TLS, SMTP 587 STARTTLS, login auto.
func Presets() []Preset {
	return []Preset{
		{
			ID: PresetHealth, TLSPolicy: PolicyMSSante, Login: LoginAuto,
			IMAP:        Server{Port: StandardPort(ProtocolIMAP, StartTLS), Security: StartTLS},
			SMTP:        Server{Port: StandardPort(ProtocolSMTP, StartTLS), Security: StartTLS},
			Alternative: Implicit,
		},
		{
			ID: PresetGeneric, TLSPolicy: PolicyDefault, Login: LoginAuto,
			IMAP: Server{Port: StandardPort(ProtocolIMAP, Implicit), Security: Implicit},
			SMTP: Server{Port: StandardPort(ProtocolSMTP, StartTLS), Security: StartTLS},
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

// GuessHost is the host name FromPreset guesses for protocol (ProtocolIMAP or ProtocolSMTP) from address:
// "<protocol>.<domain>", or "" when address is not local@domain. Operators publish their own host names: a guess
// must be shown as a guess to check, never as a known setting.
func GuessHost(protocol, address string) string {
	if _, domain, ok := SplitAddress(address); ok {
		return protocol + "." + domain
	}
	return ""
}

// FromPreset returns a valid profile for address built from preset: the server host names are guesses
// (GuessHost: imap.<domain> and smtp.<domain>) that the caller replaces with what autoconfig finds or shows as
// guesses; Name is SuggestName(address). Errors: *ValidationError (field "address", reasons missing / bad_address;
// or any field when preset itself is incomplete).
func FromPreset(preset Preset, address string) (*Profile, error) {
	if address == "" {
		return nil, &ValidationError{Field: "address", Reason: ReasonMissing}
	}
	if _, _, ok := SplitAddress(address); !ok {
		return nil, &ValidationError{Field: "address", Reason: ReasonBadAddress}
	}
	p := &Profile{
		Version:   Version,
		Name:      SuggestName(address),
		Address:   address,
		IMAP:      Server{Host: GuessHost(ProtocolIMAP, address), Port: preset.IMAP.Port, Security: preset.IMAP.Security},
		SMTP:      Server{Host: GuessHost(ProtocolSMTP, address), Port: preset.SMTP.Port, Security: preset.SMTP.Security},
		Login:     preset.Login,
		TLSPolicy: preset.TLSPolicy,
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}
