package token

import (
	"bytes"
	"crypto"
	"fmt"
	"io"
	"log"
	"net/rpc"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/miekg/pkcs11"

	"github.com/cardmail/cardmail/token/internal/wire"
)

// Environment variables of the agent protocol.
const (
	envAgent  = "CARDMAIL_TOKEN_AGENT"  // "1" in the agent process
	envModule = "CARDMAIL_TOKEN_MODULE" // module path for the agent
)

// agentHang names an agent method ("Sign", "Slots", ...) that sleeps for an hour before doing anything, to test
// deadlines. Only this package's test binary sets it (export_test.go, when it runs as an agent): a release binary
// has no way to make its agent hang.
var agentHang string

// testHangExit as agentHang makes the agent sleep for an hour once its input is closed instead of exiting, to test
// that an agent whose exit is blocked still dies with its parent (the Windows job object).
const testHangExit = "exit"

// AgentRequested reports whether this process was started as a token agent (CARDMAIL_TOKEN_AGENT=1). main and
// every TestMain of a package that starts agents must begin with:
//
//	if token.AgentRequested() { os.Exit(token.RunAgent()) }
func AgentRequested() bool { return os.Getenv(envAgent) == "1" }

// RunAgent serves the agent protocol on stdin/stdout and returns the process exit code (0 when the parent closed
// stdin). Before serving it moves the real stdout aside and points file descriptor 1 (and os.Stdout) at stderr, so
// that nothing but rpc ever reaches the parent's pipe. Logs go to stderr and never contain a PIN.
func RunAgent() int {
	logger := log.New(os.Stderr, fmt.Sprintf("cardmail token agent[%d]: ", os.Getpid()), log.LstdFlags|log.Lmicroseconds)
	out, err := takeStdout()
	if err != nil {
		logger.Printf("stdout: %v", err)
		return 2
	}
	if err := serveAgent(os.Stdin, out, logger); err != nil {
		logger.Printf("serve: %v", err)
		return 1
	}
	return 0
}

func serveAgent(r io.Reader, w io.Writer, logger *log.Logger) error {
	a := &agent{
		module:   os.Getenv(envModule),
		hang:     agentHang,
		log:      logger,
		sessions: map[uint]pkcs11.SessionHandle{},
		keys:     map[string]pkcs11.ObjectHandle{},
	}
	srv := rpc.NewServer()
	if err := srv.RegisterName(wire.Service, (*agentService)(a)); err != nil {
		return err
	}
	eof := make(chan struct{})
	conn := &agentConn{r: r, w: w, eof: eof}
	served := make(chan struct{})
	go func() {
		srv.ServeConn(conn)
		close(served)
	}()
	select {
	case <-served:
	case <-eof:
		if a.hang == testHangExit {
			// Like a module whose DLL_PROCESS_DETACH or atexit handler deadlocks: the process cannot exit.
			logger.Printf("%s: test hang hook active, sleeping", testHangExit)
			time.Sleep(time.Hour)
		}
		// net/rpc waits for pending calls before ServeConn returns; do not wait for a call hung in the module.
		select {
		case <-served:
		case <-time.After(time.Second):
			logger.Printf("input closed with a call still running; leaving")
		}
	}
	return nil
}

// agentConn is the agent's end of the pipe pair; eof is closed once reading fails.
type agentConn struct {
	r    io.Reader
	w    io.Writer
	eof  chan struct{}
	once sync.Once
}

func (c *agentConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.eof) })
	}
	return n, err
}
func (c *agentConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *agentConn) Close() error                { return nil }

// agent holds the module state of one agent process.
type agent struct {
	module string
	hang   string
	log    *log.Logger

	mu       sync.Mutex // serialises every PKCS#11 call
	ctx      *pkcs11.Ctx
	sessions map[uint]pkcs11.SessionHandle // the logged-in session kept for signing, per slot
	keys     map[string]pkcs11.ObjectHandle
}

// agentService is the rpc face of agent: its exported methods are the protocol.
type agentService agent

func (s *agentService) run(op string, resp *wire.Response, f func(a *agent) error) error {
	a := (*agent)(s)
	if a.hang == op {
		a.log.Printf("%s: test hang hook active, sleeping", op)
		time.Sleep(time.Hour)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil && op != "Init" {
		resp.Err = toWire(&CKRError{Op: op, Code: pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED})
		return nil
	}
	if err := f(a); err != nil {
		a.log.Printf("%s: %v", op, err)
		resp.Err = toWire(err)
	}
	return nil
}

// Init loads the module and calls C_Initialize.
func (s *agentService) Init(_ *wire.Request, resp *wire.Response) error {
	return s.run("Init", resp, func(a *agent) error {
		if a.ctx != nil {
			return nil
		}
		ctx := pkcs11.New(a.module)
		if ctx == nil {
			return fmt.Errorf("%w: dlopen or C_GetFunctionList failed", ErrNotPKCS11)
		}
		if err := ctx.Initialize(); err != nil {
			if ce, ok := err.(pkcs11.Error); !ok || ce != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
				ctx.Destroy()
				return ckr("C_Initialize", err)
			}
		}
		a.ctx = ctx
		if info, err := ctx.GetInfo(); err == nil {
			trim := func(s string) string { return strings.TrimRight(s, " \x00") }
			resp.Module = wire.ModuleInfo{Manufacturer: trim(info.ManufacturerID), Description: trim(info.LibraryDescription),
				Version:         fmt.Sprintf("%d.%d", info.LibraryVersion.Major, info.LibraryVersion.Minor),
				CryptokiVersion: fmt.Sprintf("%d.%d", info.CryptokiVersion.Major, info.CryptokiVersion.Minor)}
		}
		return nil
	})
}

// Finalize closes the sessions and calls C_Finalize.
func (s *agentService) Finalize(_ *wire.Request, resp *wire.Response) error {
	return s.run("Finalize", resp, func(a *agent) error {
		for slot, sh := range a.sessions {
			_ = a.ctx.CloseSession(sh)
			delete(a.sessions, slot)
		}
		err := a.ctx.Finalize()
		a.ctx.Destroy()
		a.ctx = nil
		return ckr("C_Finalize", err)
	})
}

// Slots lists slots with an initialised, recognised token.
func (s *agentService) Slots(_ *wire.Request, resp *wire.Response) error {
	return s.run("Slots", resp, func(a *agent) error {
		ids, err := a.ctx.GetSlotList(true)
		if err != nil {
			return ckr("C_GetSlotList", err)
		}
		for _, id := range ids {
			si, err := a.ctx.GetSlotInfo(id)
			if err != nil {
				if skippable(err) {
					continue
				}
				return ckr("C_GetSlotInfo", err)
			}
			ti, err := a.ctx.GetTokenInfo(id)
			if err != nil {
				if skippable(err) {
					continue
				}
				return ckr("C_GetTokenInfo", err)
			}
			if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
				continue
			}
			resp.Slots = append(resp.Slots, wire.Slot{ID: id, Description: strings.TrimRight(si.SlotDescription, " \x00"), Token: tokenInfo(ti)})
		}
		return nil
	})
}

// skippable: a slot whose token vanished or is not usable is left out of listings.
func skippable(err error) bool {
	e, ok := err.(pkcs11.Error)
	return ok && (e == pkcs11.CKR_TOKEN_NOT_RECOGNIZED || e == pkcs11.CKR_TOKEN_NOT_PRESENT || e == pkcs11.CKR_SLOT_ID_INVALID)
}

func tokenInfo(ti pkcs11.TokenInfo) wire.TokenInfo {
	trim := func(s string) string { return strings.TrimRight(s, " \x00") }
	f := ti.Flags
	return wire.TokenInfo{
		Label: trim(ti.Label), Serial: trim(ti.SerialNumber), Manufacturer: trim(ti.ManufacturerID), Model: trim(ti.Model),
		LoginRequired:      f&pkcs11.CKF_LOGIN_REQUIRED != 0,
		ProtectedAuthPath:  f&pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH != 0,
		UserPINCountLow:    f&pkcs11.CKF_USER_PIN_COUNT_LOW != 0,
		UserPINFinalTry:    f&pkcs11.CKF_USER_PIN_FINAL_TRY != 0,
		UserPINLocked:      f&pkcs11.CKF_USER_PIN_LOCKED != 0,
		UserPINToBeChanged: f&pkcs11.CKF_USER_PIN_TO_BE_CHANGED != 0,
	}
}

// TokenInfo reads C_GetTokenInfo.
func (s *agentService) TokenInfo(req *wire.Request, resp *wire.Response) error {
	return s.run("TokenInfo", resp, func(a *agent) error {
		ti, err := a.ctx.GetTokenInfo(req.Slot)
		if err != nil {
			return ckr("C_GetTokenInfo", err)
		}
		resp.Token = tokenInfo(ti)
		return nil
	})
}

// Mechanisms reports the signature mechanisms with CKF_SIGN.
func (s *agentService) Mechanisms(req *wire.Request, resp *wire.Response) error {
	return s.run("Mechanisms", resp, func(a *agent) error {
		list, err := a.ctx.GetMechanismList(req.Slot)
		if err != nil {
			return ckr("C_GetMechanismList", err)
		}
		for _, m := range list {
			switch m.Mechanism {
			case pkcs11.CKM_RSA_PKCS, pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKM_ECDSA:
			default:
				continue
			}
			info, err := a.ctx.GetMechanismInfo(req.Slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(m.Mechanism, nil)})
			if err != nil || info.Flags&pkcs11.CKF_SIGN == 0 {
				continue
			}
			switch m.Mechanism {
			case pkcs11.CKM_RSA_PKCS:
				resp.Mech.RSAPKCS = true
			case pkcs11.CKM_RSA_PKCS_PSS:
				resp.Mech.RSAPSS = true
			case pkcs11.CKM_ECDSA:
				resp.Mech.ECDSA = true
			}
		}
		return nil
	})
}

// Certificates lists X.509 certificate objects without login and pairs them with private keys by CKA_ID.
func (s *agentService) Certificates(req *wire.Request, resp *wire.Response) error {
	return s.run("Certificates", resp, func(a *agent) error {
		sh, err := a.ctx.OpenSession(req.Slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return ckr("C_OpenSession", err)
		}
		defer func() { _ = a.ctx.CloseSession(sh) }()
		certs, err := a.find(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
			pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		})
		if err != nil {
			return err
		}
		keys, err := a.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)})
		if err != nil {
			return err
		}
		keyIDs, err := a.ids(sh, keys)
		if err != nil {
			return err
		}
		// Cards (OpenSC) mark private keys CKA_PRIVATE: before login only their public key objects are visible.
		// When no private key at all is visible on a login-required token, a public key object with the
		// certificate's CKA_ID stands for the hidden private key.
		var pubIDs [][]byte
		if len(keys) == 0 {
			ti, err := a.ctx.GetTokenInfo(req.Slot)
			if err != nil {
				return ckr("C_GetTokenInfo", err)
			}
			if ti.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0 {
				pubs, err := a.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)})
				if err != nil {
					return err
				}
				if pubIDs, err = a.ids(sh, pubs); err != nil {
					return err
				}
			}
		}
		for _, o := range certs {
			var c wire.Cert
			for _, at := range []uint{pkcs11.CKA_ID, pkcs11.CKA_LABEL, pkcs11.CKA_VALUE} {
				// One attribute at a time: a module may fail the whole template for one bad attribute.
				v, err := a.ctx.GetAttributeValue(sh, o, []*pkcs11.Attribute{pkcs11.NewAttribute(at, nil)})
				if err != nil {
					if e := ckr("C_GetAttributeValue", err); CardChanged(e) {
						return e
					}
					continue
				}
				switch at {
				case pkcs11.CKA_ID:
					c.ID = v[0].Value
				case pkcs11.CKA_LABEL:
					c.Label = string(v[0].Value)
				case pkcs11.CKA_VALUE:
					c.DER = v[0].Value
				}
			}
			c.HasPrivateKey = len(c.ID) > 0 && slices.ContainsFunc(keyIDs, func(id []byte) bool { return bytes.Equal(id, c.ID) })
			if !c.HasPrivateKey && len(c.ID) > 0 && slices.ContainsFunc(pubIDs, func(id []byte) bool { return bytes.Equal(id, c.ID) }) {
				c.HasPrivateKey, c.PrivateKeyInferred = true, true
			}
			resp.Certs = append(resp.Certs, c)
		}
		return nil
	})
}

// ids reads CKA_ID of objects; objects whose CKA_ID cannot be read are skipped unless the card changed.
func (a *agent) ids(sh pkcs11.SessionHandle, objs []pkcs11.ObjectHandle) ([][]byte, error) {
	var out [][]byte
	for _, o := range objs {
		attrs, err := a.ctx.GetAttributeValue(sh, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			if e := ckr("C_GetAttributeValue", err); CardChanged(e) {
				return nil, e
			}
			continue
		}
		out = append(out, attrs[0].Value)
	}
	return out, nil
}

// find returns all objects matching tmpl (C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal).
func (a *agent) find(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := a.ctx.FindObjectsInit(sh, tmpl); err != nil {
		return nil, ckr("C_FindObjectsInit", err)
	}
	var out []pkcs11.ObjectHandle
	for {
		hs, _, err := a.ctx.FindObjects(sh, 64)
		if err != nil {
			_ = a.ctx.FindObjectsFinal(sh)
			return nil, ckr("C_FindObjects", err)
		}
		out = append(out, hs...)
		if len(hs) == 0 || len(out) > 10000 {
			break
		}
	}
	return out, ckr("C_FindObjectsFinal", a.ctx.FindObjectsFinal(sh))
}

// Login opens the session kept for signing on the slot and calls C_Login once. The PIN is zeroed on return.
func (s *agentService) Login(req *wire.Request, resp *wire.Response) error {
	defer clear(req.PIN)
	return s.run("Login", resp, func(a *agent) error {
		if !req.PINPad && len(req.PIN) == 0 {
			// An empty PIN would reach C_Login as NULL, which means the PIN pad: refuse it without a call.
			return &PINError{Reason: PINLenRange, TriesLeft: -1, Code: pkcs11.CKR_PIN_LEN_RANGE}
		}
		sh, ok := a.sessions[req.Slot]
		if !ok {
			var err error
			sh, err = a.ctx.OpenSession(req.Slot, pkcs11.CKF_SERIAL_SESSION)
			if err != nil {
				return ckr("C_OpenSession", err)
			}
		}
		var pin string
		if !req.PINPad {
			// No Go copy of the PIN: the string aliases req.PIN, which is zeroed on return.
			pin = unsafe.String(&req.PIN[0], len(req.PIN))
		}
		err := a.ctx.Login(sh, pkcs11.CKU_USER, pin)
		if e, ok := err.(pkcs11.Error); ok && e == pkcs11.CKR_USER_ALREADY_LOGGED_IN {
			err = nil
		}
		if err == nil {
			a.sessions[req.Slot] = sh
			return nil
		}
		_ = a.ctx.CloseSession(sh)
		delete(a.sessions, req.Slot)
		e, ok := err.(pkcs11.Error)
		if !ok {
			return ckr("C_Login", err)
		}
		var reason PINReason
		switch e {
		case pkcs11.CKR_PIN_INCORRECT:
			reason = PINIncorrect
		case pkcs11.CKR_PIN_LOCKED:
			reason = PINLocked
		case pkcs11.CKR_PIN_LEN_RANGE:
			reason = PINLenRange
		default:
			return ckr("C_Login", err)
		}
		pe := &PINError{Reason: reason, TriesLeft: -1, Code: uint(e)}
		if ti, err := a.ctx.GetTokenInfo(req.Slot); err == nil {
			switch {
			case ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0:
				pe.TriesLeft = 0
			case ti.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0:
				pe.TriesLeft = 1
			}
			pe.CountLow = ti.Flags&pkcs11.CKF_USER_PIN_COUNT_LOW != 0
		}
		if reason == PINLocked {
			pe.TriesLeft = 0
		}
		return pe
	})
}

// Sign signs req.Digest with the private key whose CKA_ID is req.KeyID, in the logged-in session of the slot.
func (s *agentService) Sign(req *wire.Request, resp *wire.Response) error {
	return s.run("Sign", resp, func(a *agent) error {
		sh, ok := a.sessions[req.Slot]
		if !ok {
			return ErrNotLoggedIn
		}
		mech, data, err := signInput(Scheme{Kind: SchemeKind(req.SchemeKind), Hash: crypto.Hash(req.Hash), SaltLength: req.SaltLength}, req.Digest)
		if err != nil {
			return err
		}
		cacheKey := fmt.Sprintf("%d/%x", req.Slot, req.KeyID)
		key, ok := a.keys[cacheKey]
		if !ok {
			hs, err := a.find(sh, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_ID, req.KeyID),
			})
			if err != nil {
				return err
			}
			if len(hs) == 0 {
				return ErrNoSuchKey
			}
			key = hs[0]
			a.keys[cacheKey] = key
		}
		if err := a.ctx.SignInit(sh, []*pkcs11.Mechanism{mech}, key); err != nil {
			delete(a.keys, cacheKey)
			return ckr("C_SignInit", err)
		}
		sig, err := a.ctx.Sign(sh, data)
		if err != nil {
			delete(a.keys, cacheKey)
			return ckr("C_Sign", err)
		}
		if SchemeKind(req.SchemeKind) == ECDSA {
			if sig, err = ecdsaRawToASN1(sig); err != nil {
				return err
			}
		}
		resp.Signature = sig
		return nil
	})
}

// signInput returns the mechanism and the data to pass to C_Sign for a digest.
func signInput(s Scheme, digest []byte) (*pkcs11.Mechanism, []byte, error) {
	switch s.Kind {
	case PKCS1v15:
		data, err := pkcs1Input(s.Hash, digest)
		if err != nil {
			return nil, nil, err
		}
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), data, nil
	case PSS:
		hm, mgf, ok := pssHash(s.Hash)
		if !ok {
			return nil, nil, fmt.Errorf("%w: unsupported hash %v for pss", ErrBadInput, s.Hash)
		}
		if len(digest) != s.Hash.Size() {
			return nil, nil, fmt.Errorf("%w: digest length %d for %v", ErrBadInput, len(digest), s.Hash)
		}
		salt := s.SaltLength
		if salt <= 0 {
			salt = s.Hash.Size()
		}
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hm, mgf, uint(salt))), digest, nil
	case ECDSA:
		if len(digest) == 0 {
			return nil, nil, fmt.Errorf("%w: empty digest", ErrBadInput)
		}
		return pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest, nil
	}
	return nil, nil, fmt.Errorf("%w: unknown scheme %d", ErrBadInput, int(s.Kind))
}
