package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	in := `{"Action":"start","Package":"p/a"}
{"Action":"run","Package":"p/a","Test":"TestOK"}
{"Action":"output","Package":"p/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"p/a","Test":"TestOK","Output":"    a_test.go:3: chatter\n"}
{"Action":"pass","Package":"p/a","Test":"TestOK"}
{"Action":"run","Package":"p/a","Test":"TestEtcd"}
{"Action":"output","Package":"p/a","Test":"TestEtcd","Output":"=== RUN   TestEtcd\n"}
{"Action":"output","Package":"p/a","Test":"TestEtcd","Output":"    a_test.go:9: no etcd binary at /usr/bin/etcd\n"}
{"Action":"output","Package":"p/a","Test":"TestEtcd","Output":"--- SKIP: TestEtcd (0.00s)\n"}
{"Action":"skip","Package":"p/a","Test":"TestEtcd"}
{"Action":"run","Package":"p/a","Test":"TestBad"}
{"Action":"output","Package":"p/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"output","Package":"p/a","Test":"TestBad","Output":"    a_test.go:12: wrong\n"}
{"Action":"fail","Package":"p/a","Test":"TestBad"}
{"Action":"output","Package":"p/a","Output":"FAIL\n"}
{"Action":"output","Package":"p/a","Output":"FAIL\tp/a\t0.1s\n"}
{"Action":"fail","Package":"p/a"}
{"Action":"output","Package":"p/b","Output":"PASS\n"}
{"Action":"output","Package":"p/b","Output":"ok  \tp/b\t0.2s\n"}
{"ImportPath":"p/c","Action":"build-output","Output":"p/c/x.go:1:1: syntax error\n"}
{"Action":"output","Package":"p/none","Output":"?   \tp/none\t[no test files]\n"}
{"Action":"skip","Package":"p/none"}
`
	var out bytes.Buffer
	skips := summarize(strings.NewReader(in), &out)
	want := "--- FAIL: TestBad (0.00s)\n    a_test.go:12: wrong\nFAIL\nFAIL\tp/a\t0.1s\nok  \tp/b\t0.2s\np/c/x.go:1:1: syntax error\n?   \tp/none\t[no test files]\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if len(skips) != 1 || skips[0].test != "TestEtcd" || skips[0].reason != "a_test.go:9: no etcd binary at /usr/bin/etcd" {
		t.Fatalf("skips: %+v", skips)
	}
	out.Reset()
	report(&out, skips)
	if s := out.String(); !strings.Contains(s, "1 tests skipped") || !strings.Contains(s, "SKIP p/a TestEtcd: a_test.go:9: no etcd binary") || !strings.Contains(s, "apt-get install etcd-server etcd-client") {
		t.Errorf("report:\n%s", s)
	}
}
