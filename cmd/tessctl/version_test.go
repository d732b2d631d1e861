package main

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/tesseradb/tessera/cmd/buildinfo"
)

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"version"}, &out, &errOut); code != 0 || errOut.Len() != 0 {
		t.Fatalf("tessctl version: exit %d, stderr %q", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "tessctl Version: "+buildinfo.Version+"\n") || !strings.Contains(out.String(), "etcd API Version: ") {
		t.Errorf("tessctl version:\n%s", out.String())
	}
}

// With nothing listening at the endpoint, the error says what to do.
func TestNoEndpointHint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := "http://" + l.Addr().String()
	_ = l.Close() // now nothing listens there
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"--endpoints", ep, "--dial-timeout", "300ms", "--command-timeout", "300ms", "status"}, &out, &errOut)
	if code != 1 || out.Len() != 0 {
		t.Fatalf("status with no cluster: exit %d, stdout %q", code, out.String())
	}
	if msg := errOut.String(); !strings.Contains(msg, "hint: no endpoint answered at "+ep) || !strings.Contains(msg, "--endpoints") || strings.Count(msg, "Error:") != 1 {
		t.Errorf("status with no cluster: stderr %q", msg)
	}
}
