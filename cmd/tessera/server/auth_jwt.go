package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// jwtTokens are etcd's JWT tokens (--auth-token
// jwt,pub-key=FILE,priv-key=FILE,sign-method=METHOD[,ttl=DURATION]): claims
// "username", "revision" and "exp", signed with RS256/384/512 or
// ES256/384/512. A node with only the public key verifies tokens but
// cannot issue them, as in etcd.
type jwtTokens struct {
	method string
	hash   crypto.Hash
	priv   crypto.Signer // nil: verify only
	pub    crypto.PublicKey
	ttl    time.Duration
}

// parseJWTOptions reads the options of --auth-token jwt,... and loads the
// keys.
func parseJWTOptions(spec string, defaultTTL time.Duration) (*jwtTokens, error) {
	j := &jwtTokens{ttl: defaultTTL}
	var pubFile, privFile string
	for _, opt := range strings.Split(spec, ",")[1:] {
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			return nil, fmt.Errorf("server: --auth-token option %q is not key=value", opt)
		}
		switch k {
		case "pub-key":
			pubFile = v
		case "priv-key":
			privFile = v
		case "sign-method":
			j.method = v
		case "ttl":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("server: --auth-token ttl %q: want a positive duration", v)
			}
			j.ttl = d
		default:
			return nil, fmt.Errorf("server: --auth-token: unknown option %q", k)
		}
	}
	switch j.method {
	case "RS256", "ES256":
		j.hash = crypto.SHA256
	case "RS384", "ES384":
		j.hash = crypto.SHA384
	case "RS512", "ES512":
		j.hash = crypto.SHA512
	default:
		return nil, fmt.Errorf("server: --auth-token sign-method %q: want RS256/384/512 or ES256/384/512", j.method)
	}
	if pubFile == "" {
		return nil, errors.New("server: --auth-token jwt needs pub-key")
	}
	raw, err := os.ReadFile(pubFile)
	if err != nil {
		return nil, fmt.Errorf("server: --auth-token pub-key: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("server: --auth-token pub-key %s: no PEM block", pubFile)
	}
	if j.pub, err = x509.ParsePKIXPublicKey(b.Bytes); err != nil {
		return nil, fmt.Errorf("server: --auth-token pub-key %s: %w", pubFile, err)
	}
	if privFile != "" {
		raw, err := os.ReadFile(privFile)
		if err != nil {
			return nil, fmt.Errorf("server: --auth-token priv-key: %w", err)
		}
		b, _ := pem.Decode(raw)
		if b == nil {
			return nil, fmt.Errorf("server: --auth-token priv-key %s: no PEM block", privFile)
		}
		var key any
		if key, err = x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
				if key, err = x509.ParseECPrivateKey(b.Bytes); err != nil {
					return nil, fmt.Errorf("server: --auth-token priv-key %s: not a PKCS#8, PKCS#1 or EC key", privFile)
				}
			}
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("server: --auth-token priv-key %s: not a signing key", privFile)
		}
		j.priv = signer
	}
	wantRSA := strings.HasPrefix(j.method, "RS")
	if _, isRSA := j.pub.(*rsa.PublicKey); isRSA != wantRSA {
		return nil, fmt.Errorf("server: --auth-token pub-key does not suit sign-method %s", j.method)
	}
	return j, nil
}

type jwtClaims struct {
	Username string `json:"username"`
	Revision uint64 `json:"revision"`
	Exp      int64  `json:"exp"`
}

var b64 = base64.RawURLEncoding

func (j *jwtTokens) digest(data string) []byte {
	var h hash.Hash
	switch j.hash {
	case crypto.SHA384:
		h = sha512.New384()
	case crypto.SHA512:
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write([]byte(data))
	return h.Sum(nil)
}

func (j *jwtTokens) issue(user string, revision uint64) (string, error) {
	if j.priv == nil {
		return "", errors.New("server: no --auth-token priv-key: this node cannot issue JWT tokens")
	}
	hdr, _ := json.Marshal(map[string]string{"alg": j.method, "typ": "JWT"})
	claims, _ := json.Marshal(jwtClaims{Username: user, Revision: revision, Exp: time.Now().Add(j.ttl).Unix()})
	signing := b64.EncodeToString(hdr) + "." + b64.EncodeToString(claims)
	var sig []byte
	if k, ok := j.priv.(*ecdsa.PrivateKey); ok {
		// JWS wants r||s, each the curve's size, not ASN.1.
		r, ss, err := ecdsa.Sign(rand.Reader, k, j.digest(signing))
		if err != nil {
			return "", fmt.Errorf("server: sign JWT: %w", err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		ss.FillBytes(sig[size:])
	} else {
		var err error
		if sig, err = j.priv.Sign(rand.Reader, j.digest(signing), j.hash); err != nil {
			return "", fmt.Errorf("server: sign JWT: %w", err)
		}
	}
	return signing + "." + b64.EncodeToString(sig), nil
}

func (j *jwtTokens) verify(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	rawHdr, err1 := b64.DecodeString(parts[0])
	rawClaims, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(rawHdr, &hdr) != nil || hdr.Alg != j.method {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	d := j.digest(parts[0] + "." + parts[1])
	switch pub := j.pub.(type) {
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(pub, j.hash, d, sig) != nil {
			return "", rpctypes.ErrGRPCInvalidAuthToken
		}
	case *ecdsa.PublicKey:
		n := len(sig) / 2
		if len(sig)%2 != 0 || !ecdsa.Verify(pub, d, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return "", rpctypes.ErrGRPCInvalidAuthToken
		}
	default:
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	var c jwtClaims
	if json.Unmarshal(rawClaims, &c) != nil || c.Username == "" || time.Now().Unix() >= c.Exp {
		return "", rpctypes.ErrGRPCInvalidAuthToken
	}
	return c.Username, nil
}
