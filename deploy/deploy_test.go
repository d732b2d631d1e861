// Package deploy_test checks the deployment artifacts under deploy/ and the
// Dockerfile against the real thing: Kubernetes manifests decode strictly
// into Kubernetes' own types, every flag they (and the systemd unit and the
// Dockerfile) pass is one the tessera binary accepts, the binary builds
// static as the Dockerfile builds it, promtool accepts the Prometheus
// config, alert rules and every dashboard expression, and the dashboards are
// what deploy/grafana/gen writes.
package deploy_test

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// buildFlags are the Dockerfile's: a static, stripped binary.
var buildFlags = []string{"-trimpath", "-ldflags=-s -w"}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// tesseraBinary builds cmd/tessera once, as the Dockerfile does.
func tesseraBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tessera-deploy-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "tessera")
		args := append([]string{"build"}, buildFlags...)
		args = append(args, "-o", binPath, "github.com/tesseradb/tessera/cmd/tessera")
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go %v: %v\n%s", args, err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var helpFlag = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)

// acceptedFlags returns the flags `tessera --help` lists.
func acceptedFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(tesseraBinary(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("tessera --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := helpFlag.FindStringSubmatch(line); m != nil {
			flags[m[1]] = true
		}
	}
	if !flags["name"] || !flags["initial-cluster"] {
		t.Fatalf("tessera --help lists no --name or --initial-cluster:\n%s", out)
	}
	return flags
}

// checkFlags checks that every argument is a --flag=value of a flag tessera
// accepts, and that tessera parses them all (with their values) when run
// with --help, which parses flags and exits before starting a node.
func checkFlags(t *testing.T, what string, args []string, env map[string]string) {
	t.Helper()
	accepted := acceptedFlags(t)
	var expanded []string
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !accepted[name] {
			t.Errorf("%s: argument %q is not a flag `tessera --help` lists", what, a)
		}
		for k, v := range env {
			a = strings.ReplaceAll(a, k, v)
		}
		expanded = append(expanded, a)
	}
	out, err := exec.Command(tesseraBinary(t), append(expanded, "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: tessera refuses the arguments %q: %v\n%s", what, expanded, err, out)
	}
}

// manifest is one decoded Kubernetes object.
type manifest struct {
	file string
	obj  any
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) the manifest uses. Its Go types live in the
// operator's module, not in k8s.io/api; these fields follow its CRD, and the
// strict decode refuses any other.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port      string `json:"port"`
			Path      string `json:"path"`
			Interval  string `json:"interval"`
			Scheme    string `json:"scheme"`
			TLSConfig *struct {
				CA struct {
					Secret struct {
						Name string `json:"name"`
						Key  string `json:"key"`
					} `json:"secret"`
				} `json:"ca"`
				ServerName string `json:"serverName"`
			} `json:"tlsConfig"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	var out []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(b, &head); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "v1 Service":
			obj = &corev1.Service{}
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "monitoring.coreos.com/v1 ServiceMonitor":
			obj = &serviceMonitor{}
		default:
			t.Fatalf("%s: unexpected object %s %s", f, head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			t.Fatalf("%s: strict decode into %T: %v", f, obj, err)
		}
		out = append(out, manifest{file: f, obj: obj})
	}
	return out
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesManifests decodes deploy/kubernetes strictly and checks that
// the objects fit together and that the StatefulSet passes only flags
// tessera accepts.
func TestKubernetesManifests(t *testing.T) {
	var sts *appsv1.StatefulSet
	var services []*corev1.Service
	var pdbs []*policyv1.PodDisruptionBudget
	var monitors []*serviceMonitor
	for _, m := range loadManifests(t) {
		switch o := m.obj.(type) {
		case *appsv1.StatefulSet:
			if sts != nil {
				t.Fatalf("%s: a second StatefulSet", m.file)
			}
			sts = o
		case *corev1.Service:
			services = append(services, o)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *serviceMonitor:
			monitors = append(monitors, o)
		}
	}
	if sts == nil || len(pdbs) != 1 || len(monitors) != 1 {
		t.Fatalf("want a StatefulSet, a PodDisruptionBudget and a ServiceMonitor; have %v, %d, %d", sts != nil, len(pdbs), len(monitors))
	}
	podLabels := sts.Spec.Template.Labels
	if sts.Name == "" || sts.Spec.Replicas == nil || sts.Spec.Selector == nil || !subset(sts.Spec.Selector.MatchLabels, podLabels) {
		t.Fatalf("StatefulSet: name, replicas and a selector matching the pod labels are required")
	}

	// The headless Service the StatefulSet names.
	var headless *corev1.Service
	for _, s := range services {
		if s.Name == sts.Spec.ServiceName {
			headless = s
		}
		if !subset(s.Spec.Selector, podLabels) {
			t.Errorf("Service %s selects %v, not the pods %v", s.Name, s.Spec.Selector, podLabels)
		}
	}
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Fatalf("StatefulSet serviceName %q: want a headless Service publishing not-ready addresses", sts.Spec.ServiceName)
	}

	// The container: image, ports the probes and Services name, volumes.
	if n := len(sts.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	if c.Image == "" || !ports["client"] || !ports["peer"] {
		t.Fatalf("container: image and ports client and peer required (%q, %v)", c.Image, ports)
	}
	for _, s := range services {
		for _, p := range s.Spec.Ports {
			if !ports[p.TargetPort.String()] {
				t.Errorf("Service %s targets port %q the container does not name", s.Name, p.TargetPort.String())
			}
		}
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe: want GET /readyz")
	}
	// The client port serves TLS with the mounted secret's certificate, so
	// the probe speaks HTTPS; the secret is required, not optional.
	if strings.HasPrefix(flagValue(c.Args, "--listen-client-urls"), "https://") {
		if c.ReadinessProbe.HTTPGet.Scheme != "HTTPS" {
			t.Errorf("readiness probe: the client port serves TLS, want scheme HTTPS")
		}
		if !strings.HasPrefix(flagValue(c.Args, "--cert-file"), "/etc/tessera/tls/") || !strings.HasPrefix(flagValue(c.Args, "--key-file"), "/etc/tessera/tls/") {
			t.Errorf("client TLS without --cert-file/--key-file from the mounted secret")
		}
	}
	sc, psc := c.SecurityContext, sts.Spec.Template.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("pod must run as non-root without privilege escalation")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var tlsSecret bool
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "tessera-tls" && mounts[v.Name] != "" {
			tlsSecret = true
		}
	}
	if !tlsSecret {
		t.Errorf("the TLS secret tessera-tls is not mounted")
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || mounts[sts.Spec.VolumeClaimTemplates[0].Name] == "" {
		t.Errorf("want one volume claim template, mounted")
	}

	// PDB and ServiceMonitor select what exists.
	if pdb := pdbs[0]; pdb.Spec.Selector == nil || !subset(pdb.Spec.Selector.MatchLabels, podLabels) || (pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil) {
		t.Errorf("PodDisruptionBudget: must select the pods and bound disruptions")
	}
	mon := monitors[0]
	var monitored *corev1.Service
	for _, s := range services {
		if subset(mon.Spec.Selector.MatchLabels, s.Labels) {
			if monitored != nil {
				t.Errorf("ServiceMonitor selects both Services %s and %s (every node scraped twice)", monitored.Name, s.Name)
			}
			monitored = s
		}
	}
	if monitored == nil || len(mon.Spec.Endpoints) == 0 {
		t.Fatalf("ServiceMonitor selects no Service or has no endpoint")
	}
	for _, e := range mon.Spec.Endpoints {
		if !slices.ContainsFunc(monitored.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) || e.Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %+v: not /metrics on a port of Service %s", e, monitored.Name)
		}
	}
	if !strings.Contains(monitored.Name, "tessera") {
		t.Errorf("the scraped Service %q becomes the job label; the rules select job=~\".*tessera.*\"", monitored.Name)
	}

	// Flags: only ones tessera accepts, and --initial-cluster names exactly
	// the StatefulSet's pods.
	if len(c.Command) != 0 {
		t.Errorf("container command %q overrides the image's entrypoint", c.Command)
	}
	env := map[string]string{"$(POD_NAME)": sts.Name + "-0", "$(POD_NAMESPACE)": "default"}
	checkFlags(t, "StatefulSet", c.Args, env)
	var members []string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--initial-cluster="); ok {
			for _, m := range strings.Split(v, ",") {
				name, _, _ := strings.Cut(m, "=")
				members = append(members, name)
			}
		}
	}
	var want []string
	for i := range int(*sts.Spec.Replicas) {
		want = append(want, fmt.Sprintf("%s-%d", sts.Name, i))
	}
	if !slices.Equal(members, want) {
		t.Errorf("--initial-cluster members %v, want the StatefulSet's pods %v", members, want)
	}
}

// TestSystemdUnit checks the unit's flags against tessera and, when
// systemd-analyze is installed, the unit itself.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/tessera.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "\\\n", " ")
	var execStart string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
	}
	fields := strings.Fields(execStart)
	if len(fields) < 2 || fields[0] != "/usr/local/bin/tessera" {
		t.Fatalf("ExecStart %q: want /usr/local/bin/tessera and flags", execStart)
	}
	env := map[string]string{
		"${TESSERA_NAME}": "node1", "${TESSERA_CLIENT_URL}": "http://127.0.0.1:2379", "${TESSERA_PEER_URL}": "http://127.0.0.1:2380",
		"${TESSERA_INITIAL_CLUSTER}": "node1=http://127.0.0.1:2380", "${TESSERA_SPLIT_KEYS}": "g,p",
	}
	checkFlags(t, "systemd ExecStart", fields[1:], env)
	for _, want := range []string{"User=tessera", "KillSignal=SIGTERM", "StateDirectory=tessera", "NoNewPrivileges=true"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("unit lacks %s", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit's syntax is not verified")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "tessera.service")
	// Point the unit at the built binary (verify checks it is executable).
	if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/local/bin/tessera \\"), []byte(tesseraBinary(t)+" \\")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", p).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDockerfile checks that the image is multi-stage, built static and run
// as non-root, and that the binary built its way is static.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user string
	var cmd []string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "FROM "):
			froms = append(froms, line)
		case strings.HasPrefix(line, "USER "):
			user = strings.TrimSpace(strings.TrimPrefix(line, "USER "))
		case strings.HasPrefix(line, "CMD "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "CMD ")), &cmd); err != nil {
				t.Fatalf("CMD: %v", err)
			}
		}
	}
	if len(froms) < 2 || !strings.Contains(froms[len(froms)-1], "static") {
		t.Errorf("want a multi-stage build ending on a static base image: %q", froms)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: the image must run as non-root", user)
	}
	if !strings.Contains(string(b), `CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tessera ./cmd/tessera`) {
		t.Errorf("the Dockerfile's build command differs from the one this test checks (buildFlags)")
	}
	checkFlags(t, "Dockerfile CMD", cmd, nil)
	f, err := elf.Open(tesseraBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (program header %v)", p.Type)
		}
	}
}

// flagValue returns the value of a --flag=value argument ("" if absent).
func flagValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}
