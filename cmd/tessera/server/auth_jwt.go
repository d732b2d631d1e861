package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
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
// "username", "revision" and "exp", signed with RS256/384/512,
// PS256/384/512, ES256/384/512, EdDSA (Ed25519) or HS256/384/512 (the
// priv-key file's bytes as the shared secret): etcd 3.7's methods. A node with only the public key verifies tokens but
// cannot issue them, as in etcd.
type jwtTokens struct {
	method string
	hash   crypto.Hash
	priv   crypto.Signer // nil: verify only
	pub    crypto.PublicKey
	secret []byte // HS256/384/512: the shared secret (priv-key's bytes)
	ttl    time.Duration
}

// jwtDefaultTTL is a JWT's lifetime without a ttl= option (etcd's
// auth.DefaultTTL; --auth-token-ttl applies to simple tokens only).
const jwtDefaultTTL = 5 * time.Minute

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
	case "RS256", "PS256", "ES256":
		j.hash = crypto.SHA256
	case "RS384", "PS384", "ES384":
		j.hash = crypto.SHA384
	case "RS512", "PS512", "ES512":
		j.hash = crypto.SHA512
	case "HS256":
		j.hash = crypto.SHA256
	case "HS384":
		j.hash = crypto.SHA384
	case "HS512":
		j.hash = crypto.SHA512
	case "EdDSA":
		// Ed25519 signs the message itself (no pre-hash).
	default:
		return nil, fmt.Errorf("server: --auth-token sign-method %q: want RS256/384/512, PS256/384/512, ES256/384/512, EdDSA or HS256/384/512", j.method)
	}
	if j.isHMAC() {
		// etcd: the priv-key file's bytes are the shared secret.
		if privFile == "" {
			return nil, fmt.Errorf("server: --auth-token sign-method %s needs priv-key (the shared secret)", j.method)
		}
		secret, err := os.ReadFile(privFile)
		if err != nil {
			return nil, fmt.Errorf("server: --auth-token priv-key: %w", err)
		}
		if len(secret) == 0 {
			return nil, fmt.Errorf("server: --auth-token priv-key %s is empty", privFile)
		}
		j.secret = secret
		return j, nil
	}
	if pubFile == "" && privFile == "" {
		return nil, errors.New("server: --auth-token jwt needs pub-key or priv-key")
	}
	if pubFile != "" {
		b, err := readPEM("pub-key", pubFile)
		if err != nil {
			return nil, err
		}
		if j.pub, err = x509.ParsePKIXPublicKey(b.Bytes); err != nil {
			return nil, fmt.Errorf("server: --auth-token pub-key %s: %w", pubFile, err)
		}
		if !keySuits(j.method, j.pub) {
			return nil, fmt.Errorf("server: --auth-token pub-key (%T) does not suit sign-method %s", j.pub, j.method)
		}
	}
	if privFile != "" {
		b, err := readPEM("priv-key", privFile)
		if err != nil {
			return nil, err
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
		if !ok || !keySuits(j.method, signer.Public()) {
			return nil, fmt.Errorf("server: --auth-token priv-key (%T) does not suit sign-method %s", key, j.method)
		}
		j.priv = signer
		// As etcd: with both keys they must be a pair; with the private
		// key alone its public half verifies.
		type equaler interface{ Equal(crypto.PublicKey) bool }
		if j.pub == nil {
			j.pub = signer.Public()
		} else if eq, ok := j.pub.(equaler); !ok || !eq.Equal(signer.Public()) {
			return nil, fmt.Errorf("server: --auth-token pub-key %s and priv-key %s are not a key pair", pubFile, privFile)
		}
	}
	return j, nil
}

func readPEM(what, file string) (*pem.Block, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("server: --auth-token %s: %w", what, err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("server: --auth-token %s %s: no PEM block", what, file)
	}
	return b, nil
}

// keySuits reports whether a public key is of the kind a sign method needs
// (RS and PS: RSA; ES: ECDSA; EdDSA: Ed25519).
func keySuits(method string, pub crypto.PublicKey) bool {
	switch pub.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(method, "RS") || strings.HasPrefix(method, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(method, "ES")
	case ed25519.PublicKey:
		return method == "EdDSA"
	}
	return false
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
	if j.priv == nil && j.secret == nil {
		return "", errors.New("server: no --auth-token priv-key: this node cannot issue JWT tokens")
	}
	hdr, _ := json.Marshal(map[string]string{"alg": j.method, "typ": "JWT"})
	claims, _ := json.Marshal(jwtClaims{Username: user, Revision: revision, Exp: time.Now().Add(j.ttl).Unix()})
	signing := b64.EncodeToString(hdr) + "." + b64.EncodeToString(claims)
	var sig []byte
	var err error
	switch k := j.priv.(type) {
	case nil:
		sig = j.mac(signing)
	case *ecdsa.PrivateKey:
		// JWS wants r||s, each the curve's size, not ASN.1.
		r, ss, serr := ecdsa.Sign(rand.Reader, k, j.digest(signing))
		if serr != nil {
			return "", fmt.Errorf("server: sign JWT: %w", serr)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		ss.FillBytes(sig[size:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(signing))
	case *rsa.PrivateKey:
		if j.isPSS() {
			// RFC 7518 3.5: the salt is as long as the hash.
			sig, err = rsa.SignPSS(rand.Reader, k, j.hash, j.digest(signing), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, j.hash, j.digest(signing))
		}
	default:
		err = fmt.Errorf("unsupported key %T", j.priv)
	}
	if err != nil {
		return "", fmt.Errorf("server: sign JWT: %w", err)
	}
	return signing + "." + b64.EncodeToString(sig), nil
}

func (j *jwtTokens) isPSS() bool  { return strings.HasPrefix(j.method, "PS") }
func (j *jwtTokens) isHMAC() bool { return strings.HasPrefix(j.method, "HS") }

func (j *jwtTokens) mac(signing string) []byte {
	var m hash.Hash
	switch j.hash {
	case crypto.SHA384:
		m = hmac.New(sha512.New384, j.secret)
	case crypto.SHA512:
		m = hmac.New(sha512.New, j.secret)
	default:
		m = hmac.New(sha256.New, j.secret)
	}
	m.Write([]byte(signing))
	return m.Sum(nil)
}

// verify returns the token's user and the auth revision it was issued at.
func (j *jwtTokens) verify(tok string) (string, uint64, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", 0, rpctypes.ErrGRPCInvalidAuthToken
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	rawHdr, err1 := b64.DecodeString(parts[0])
	rawClaims, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(rawHdr, &hdr) != nil || hdr.Alg != j.method {
		return "", 0, rpctypes.ErrGRPCInvalidAuthToken
	}
	signed := parts[0] + "." + parts[1]
	d := j.digest(signed)
	switch pub := j.pub.(type) {
	case nil:
		if j.secret == nil || !hmac.Equal(sig, j.mac(signed)) {
			return "", 0, rpctypes.ErrGRPCInvalidAuthToken
		}
	case *rsa.PublicKey:
		var err error
		if j.isPSS() {
			// Any salt length, as etcd's JWT library verifies.
			err = rsa.VerifyPSS(pub, j.hash, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(pub, j.hash, d, sig)
		}
		if err != nil {
			return "", 0, rpctypes.ErrGRPCInvalidAuthToken
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, []byte(signed), sig) {
			return "", 0, rpctypes.ErrGRPCInvalidAuthToken
		}
	case *ecdsa.PublicKey:
		n := len(sig) / 2
		if len(sig)%2 != 0 || !ecdsa.Verify(pub, d, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return "", 0, rpctypes.ErrGRPCInvalidAuthToken
		}
	default:
		return "", 0, rpctypes.ErrGRPCInvalidAuthToken
	}
	var c jwtClaims
	if json.Unmarshal(rawClaims, &c) != nil || c.Username == "" || time.Now().Unix() >= c.Exp {
		return "", 0, rpctypes.ErrGRPCInvalidAuthToken
	}
	return c.Username, c.Revision, nil
}
