package server

import (
	"crypto/ecdsa"
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
	for _, tc := range []struct {
		method    string
		priv, pub any
	}{{"RS256", rk, &rk.PublicKey}, {"ES256", ek, &ek.PublicKey}} {
		privPath, pubPath := writeKeys(t, tc.priv, tc.pub)
		j, err := parseJWTOptions("jwt,pub-key="+pubPath+",priv-key="+privPath+",sign-method="+tc.method+",ttl=1h", time.Minute)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		tok, err := j.issue("alice", 7)
		if err != nil {
			t.Fatalf("%s issue: %v", tc.method, err)
		}
		if u, err := j.verify(tok); err != nil || u != "alice" {
			t.Errorf("%s verify: %q %v", tc.method, u, err)
		}
		parts := strings.Split(tok, ".")
		forged := parts[0] + "." + b64.EncodeToString([]byte(`{"username":"root","revision":7,"exp":9999999999}`)) + "." + parts[2]
		if _, err := j.verify(forged); err == nil {
			t.Errorf("%s: a token with altered claims verified", tc.method)
		}
		verifyOnly, err := parseJWTOptions("jwt,pub-key="+pubPath+",sign-method="+tc.method, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if u, err := verifyOnly.verify(tok); err != nil || u != "alice" {
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
		if _, err := j.verify(expired); err == nil {
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
	if _, err := verifier.verify(tok); err == nil {
		t.Error("a token signed with another key verified")
	}
	for _, bad := range []string{"jwt,sign-method=RS256", "jwt,pub-key=" + pubPath + ",sign-method=HS256", "jwt,pub-key=" + pubPath + ",sign-method=RS256", "jwt,pub-key=" + pubPath + ",sign-method=ES256,nope=1"} {
		if _, err := parseJWTOptions(bad, time.Minute); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
