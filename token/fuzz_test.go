package token

import (
	"testing"
	"time"
)

// FuzzEvaluate feeds arbitrary CKA_VALUE bytes through certificate parsing and evaluation: it must never panic,
// and a value that does not parse must be reported as malformed.
func FuzzEvaluate(f *testing.F) {
	valid := mkCert(f, nil, nil)
	f.Add(valid, true)
	f.Add(valid[:len(valid)/2], true)
	f.Add([]byte{}, false)
	f.Add([]byte{0x30, 0x80}, true)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01}, false)
	f.Fuzz(func(t *testing.T, der []byte, hasKey bool) {
		c := newCertificate(1, "t", "s", []byte{1}, "l", der, hasKey, time.Unix(1_800_000_000, 0))
		if c.ParseErr != nil && (c.Cert != nil || !c.Verdict.Has(ReasonMalformed) || c.Verdict.Usable) {
			t.Fatalf("unparsable certificate not malformed: %+v", c.Verdict)
		}
		if c.Verdict.Usable != (len(c.Verdict.Reasons) == 0) {
			t.Fatalf("inconsistent verdict %+v", c.Verdict)
		}
		_ = c.CommonName() + c.Email() + c.IssuerCommonName() + c.Fingerprint()
	})
}
