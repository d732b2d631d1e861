package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeKeys writes a key pair as PEM files (PKCS#8 and PKIX) and returns
// their paths.
func writeKeys(t *testing.T, priv any, pub any) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath := filepath.Join(dir, "key"), filepath.Join(dir, "key.pub")
	if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}

// TestJWTTokens: tokens signed with RS256 and ES256 verify, carry the user,
// expire, and fail when tampered with or signed by another key; a node with
// only the public key verifies but cannot issue.
func TestJWTTokens(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	epub, epriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method    string
		priv, pub any
	}{
		{"RS256", rk, &rk.PublicKey}, {"ES256", ek, &ek.PublicKey},
		{"PS256", rk, &rk.PublicKey}, {"PS384", rk, &rk.PublicKey}, {"PS512", rk, &rk.PublicKey},
		{"EdDSA", epriv, epub},
	} {
		privPath, pubPath := writeKeys(t, tc.priv, tc.pub)
		j, err := parseJWTOptions("jwt,pub-key="+pubPath+",priv-key="+privPath+",sign-method="+tc.method+",ttl=1h", time.Minute)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		tok, err := j.issue("alice", 7)
		if err != nil {
			t.Fatalf("%s issue: %v", tc.method, err)
		}
		if u, rev, err := j.verify(tok); err != nil || u != "alice" || rev != 7 {
			t.Errorf("%s verify: %q revision %d %v, want alice at 7", tc.method, u, rev, err)
		}
		parts := strings.Split(tok, ".")
		forged := parts[0] + "." + b64.EncodeToString([]byte(`{"username":"root","revision":7,"exp":9999999999}`)) + "." + parts[2]
		if _, _, err := j.verify(forged); err == nil {
			t.Errorf("%s: a token with altered claims verified", tc.method)
		}
		verifyOnly, err := parseJWTOptions("jwt,pub-key="+pubPath+",sign-method="+tc.method, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if u, _, err := verifyOnly.verify(tok); err != nil || u != "alice" {
			t.Errorf("%s verify-only node: %q %v", tc.method, u, err)
		}
		if _, err := verifyOnly.issue("alice", 1); err == nil {
			t.Errorf("%s: a node without the private key issued a token", tc.method)
		}
		j.ttl = -time.Second
		expired, err := j.issue("alice", 7)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := j.verify(expired); err == nil {
			t.Errorf("%s: an expired token verified", tc.method)
		}
	}
	// A token from another key does not verify.
	op, opub := writeKeys(t, other, &other.PublicKey)
	_, pubPath := writeKeys(t, ek, &ek.PublicKey)
	signer, err := parseJWTOptions("jwt,pub-key="+opub+",priv-key="+op+",sign-method=ES256", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := parseJWTOptions("jwt,pub-key="+pubPath+",sign-method=ES256", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.issue("root", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := verifier.verify(tok); err == nil {
		t.Error("a token signed with another key verified")
	}
	_, edPub := writeKeys(t, epriv, epub)
	rsaPriv, rsaPub := writeKeys(t, rk, &rk.PublicKey)
	for _, bad := range []string{"jwt,sign-method=RS256", "jwt,pub-key=" + pubPath + ",sign-method=HS256", "jwt,pub-key=" + pubPath + ",sign-method=RS256", "jwt,pub-key=" + pubPath + ",sign-method=ES256,nope=1",
		"jwt,pub-key=" + pubPath + ",sign-method=PS256", "jwt,pub-key=" + pubPath + ",sign-method=EdDSA", "jwt,pub-key=" + edPub + ",sign-method=ES256",
		"jwt,pub-key=" + edPub + ",priv-key=" + rsaPriv + ",sign-method=EdDSA", "jwt,pub-key=" + rsaPub + ",sign-method=Ed25519"} {
		if _, err := parseJWTOptions(bad, time.Minute); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestJWTPSSInterop: PS tokens are signed as RFC 7518 says (PSS, salt as
// long as the hash: what etcd's JWT library checks), and tokens signed with
// another salt length, which that library accepts, verify too.
func TestJWTPSSInterop(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath := writeKeys(t, rk, &rk.PublicKey)
	j, err := parseJWTOptions("jwt,pub-key="+pubPath+",priv-key="+privPath+",sign-method=PS384", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := j.issue("alice", 3)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	h := crypto.SHA384.New()
	h.Write([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPSS(&rk.PublicKey, crypto.SHA384, h.Sum(nil), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
		t.Fatalf("PS384 signature is not RFC 7518's: %v", err)
	}
	other, err := rsa.SignPSS(rand.Reader, rk, crypto.SHA384, h.Sum(nil), &rsa.PSSOptions{SaltLength: 20})
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := j.verify(parts[0] + "." + parts[1] + "." + b64.EncodeToString(other)); err != nil || u != "alice" {
		t.Fatalf("PS384 token with a 20-byte salt: %q %v", u, err)
	}
	// A PKCS#1 v1.5 signature is not a PSS one.
	v15, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA384, h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.verify(parts[0] + "." + parts[1] + "." + b64.EncodeToString(v15)); err == nil {
		t.Fatal("a PKCS#1 v1.5 signature verified as PS384")
	}
}

// TestJWTKeysAsEtcd: HS256/384/512 sign with the priv-key file's bytes; a
// private key alone both issues and verifies; a public and a private key
// that are not a pair are refused, as etcd refuses them.
func TestJWTKeysAsEtcd(t *testing.T) {
	dir := t.TempDir()
	secret, other := filepath.Join(dir, "secret"), filepath.Join(dir, "other")
	if err := os.WriteFile(secret, []byte("a shared secret of the cluster"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte("another secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"HS256", "HS384", "HS512"} {
		j, err := parseJWTOptions("jwt,priv-key="+secret+",sign-method="+m, time.Minute)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		tok, err := j.issue("alice", 1)
		if err != nil {
			t.Fatal(err)
		}
		if u, _, err := j.verify(tok); err != nil || u != "alice" {
			t.Fatalf("%s verify: %q %v", m, u, err)
		}
		o, err := parseJWTOptions("jwt,priv-key="+other+",sign-method="+m, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := o.verify(tok); err == nil {
			t.Fatalf("%s: a token verified with another secret", m)
		}
	}
	if _, err := parseJWTOptions("jwt,pub-key="+secret+",sign-method=HS256", time.Minute); err == nil {
		t.Fatal("HS256 without priv-key accepted")
	}

	k1, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv1, pub1 := writeKeys(t, k1, &k1.PublicKey)
	_, pub2 := writeKeys(t, k2, &k2.PublicKey)
	privOnly, err := parseJWTOptions("jwt,priv-key="+priv1+",sign-method=ES256", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := privOnly.issue("bob", 1)
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := privOnly.verify(tok); err != nil || u != "bob" {
		t.Fatalf("private key only: %q %v", u, err)
	}
	pubOnly, err := parseJWTOptions("jwt,pub-key="+pub1+",sign-method=ES256", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := pubOnly.verify(tok); err != nil || u != "bob" {
		t.Fatalf("public key only: %q %v", u, err)
	}
	if _, err := parseJWTOptions("jwt,pub-key="+pub2+",priv-key="+priv1+",sign-method=ES256", time.Minute); err == nil {
		t.Fatal("keys that are not a pair accepted")
	}
	// A token whose header names another method is refused (no algorithm
	// confusion between a public key and an HMAC secret).
	parts := strings.Split(tok, ".")
	hs := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	if _, _, err := pubOnly.verify(hs); err == nil {
		t.Fatal("a token naming HS256 verified on an ES256 node")
	}
}
