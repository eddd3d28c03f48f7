package mailsrv

import (
	"encoding/base64"
	"net/url"
	"strings"
)

// decodeOCSPPath decodes the request of an OCSP GET (RFC 6960 appendix A.1: the base64 DER request, URL-encoded,
// as the last path element).
func decodeOCSPPath(path string) ([]byte, error) {
	p := path[strings.LastIndexByte(path, '/')+1:]
	un, err := url.PathUnescape(p)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(un)
}
