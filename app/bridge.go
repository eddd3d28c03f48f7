package app

import (
	"crypto/tls"
	"fmt"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/words"
)

// registry returns the service's bridge registry, created on first use on BridgeStore (default: the user's store).
func (s *Accounts) registry() (*bridge.Registry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bridges != nil {
		return s.bridges, nil
	}
	store := s.BridgeStore
	if store == nil {
		var err error
		if store, err = bridge.DefaultStore(); err != nil {
			return nil, err
		}
	}
	s.bridges = bridge.NewRegistry(s.dialer, store)
	return s.bridges, nil
}

// BridgeSetup returns the saved bridge settings of a profile's account, its bridge password (created on first use)
// and the loopback certificate file.
func (s *Accounts) BridgeSetup(p *profile.Profile) (bridge.Setup, error) {
	setup, _, err := s.bridgeSetup(p)
	return setup, err
}

// bridgeSetup is BridgeSetup, with the loopback TLS configuration the certificate file belongs to.
func (s *Accounts) bridgeSetup(p *profile.Profile) (bridge.Setup, *tls.Config, error) {
	r, err := s.registry()
	if err != nil {
		return bridge.Setup{}, nil, err
	}
	set, err := r.Store().Settings(p.Address)
	if err != nil {
		return bridge.Setup{Settings: set}, nil, err
	}
	pw, err := r.Store().Password(p.Address)
	if err != nil {
		return bridge.Setup{Settings: set}, nil, err
	}
	cfg, certFile, err := r.Store().LoopbackTLS()
	return bridge.Setup{Settings: set, Password: pw, CertFile: certFile}, cfg, err
}

// StartBridge starts (or restarts) the bridge of a profile's account with set and remembers it as enabled. lang is
// the language of the texts its local clients show.
func (s *Accounts) StartBridge(p *profile.Profile, set bridge.Settings, lang words.Lang) error {
	r, err := s.registry()
	if err != nil {
		return err
	}
	a, err := s.Account(p)
	if err != nil {
		return err
	}
	_, err = r.Start(p.Name, a, set, lang)
	return err
}

// ServeBridge starts a bridge for p outside the registry (the command line's `bridge`, which runs until it is
// interrupted): it is not remembered as enabled, and its setup comes from the same store (the password local
// clients log in with is stable for the account and the OS user). imapAddr or smtpAddr "" leaves that side out;
// onEvent hears every connection, card event and upstream error. The caller closes the bridge. Errors: those of
// bridge.Start (*bridge.ListenError for a taken port or a non-loopback address), the store's, or the account's.
func (s *Accounts) ServeBridge(p *profile.Profile, imapAddr, smtpAddr string, lang words.Lang,
	onEvent func(bridge.Event)) (*bridge.Bridge, bridge.Setup, error) {
	setup, tlsCfg, err := s.bridgeSetup(p)
	if err != nil {
		return nil, setup, err
	}
	a, err := s.Account(p)
	if err != nil {
		return nil, setup, err
	}
	b, err := bridge.Start(bridge.Config{Account: a, Dialer: s.dialer, IMAPAddr: imapAddr, SMTPAddr: smtpAddr,
		Password: setup.Password, TLS: tlsCfg, Lang: lang, OnEvent: onEvent})
	return b, setup, err
}

// StopBridge stops the bridge of account name and remembers it as disabled.
func (s *Accounts) StopBridge(name string) error {
	r, err := s.registry()
	if err != nil {
		return err
	}
	return r.Stop(name, true)
}

// ResetBridgePassword gives a profile's account a new bridge password; a running bridge restarts with it.
func (s *Accounts) ResetBridgePassword(p *profile.Profile, lang words.Lang) (string, error) {
	r, err := s.registry()
	if err != nil {
		return "", err
	}
	pw, err := r.Store().ResetPassword(p.Address)
	if err != nil {
		return "", err
	}
	if r.Get(p.Name) != nil {
		set, err := r.Store().Settings(p.Address)
		if err != nil {
			return pw, err
		}
		return pw, s.StartBridge(p, set, lang)
	}
	return pw, nil
}

// BridgeStatus returns the status of account name's bridge; false when it does not run.
func (s *Accounts) BridgeStatus(name string) (bridge.Status, bool) {
	r, err := s.registry()
	if err != nil {
		return bridge.Status{}, false
	}
	b := r.Get(name)
	if b == nil {
		return bridge.Status{}, false
	}
	return b.Status(), true
}

// SubscribeBridges calls fn with the account name after each event of its bridge (from the bridges' goroutines;
// fn must not block). The returned func unsubscribes.
func (s *Accounts) SubscribeBridges(fn func(name string)) func() {
	r, err := s.registry()
	if err != nil {
		return func() {}
	}
	return r.Subscribe(func(name string, _ bridge.Event) { fn(name) })
}

// StartEnabledBridges starts the bridges that were on when the app last ran (and are not running), and returns the
// errors by account name.
func (s *Accounts) StartEnabledBridges(ps []*profile.Profile, lang words.Lang) map[string]error {
	r, err := s.registry()
	if err != nil {
		return nil
	}
	errs := map[string]error{}
	for _, p := range ps {
		if p == nil || p.Address == "" || r.Get(p.Name) != nil {
			continue
		}
		set, err := r.Store().Settings(p.Address)
		if err != nil || !set.Enabled {
			continue
		}
		if err := s.StartBridge(p, set, lang); err != nil {
			errs[p.Name] = fmt.Errorf("bridge of %q: %w", p.Name, err)
		}
	}
	return errs
}

// closeBridges stops the running bridges (their settings stay).
func (s *Accounts) closeBridges() error {
	s.mu.Lock()
	r := s.bridges
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.Close()
}
