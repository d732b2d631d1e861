package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/cmd/buildinfo"
)

// etcd's HTTP probes on the client port, next to /health and /metrics:
//
//   - /version: etcd's JSON ({"etcdserver", "etcdcluster", "storage"}) plus
//     "tessera", this binary's version.
//   - /livez: the process serves reads (etcd's serializable_read check).
//   - /readyz: the node can serve a client (etcd's data_corruption,
//     serializable_read, linearizable_read and non_learner checks).
//
// As in etcd, a probe answers 200 "ok", with one "[+]check ok" line per
// check first when the query has ?verbose; a failed check answers 503 with
// every check's line; ?exclude=check skips a check; /livez/<check> and
// /readyz/<check> run one check; any method but GET is refused.

// probeCheck is one named check of /livez or /readyz.
type probeCheck struct {
	name string
	run  func(ctx context.Context) error
}

// registerProbes adds /version, /livez and /readyz to the client port's mux.
func (s *Server) registerProbes(mux *http.ServeMux) {
	mux.HandleFunc("/version", s.serveVersion)
	livez := []probeCheck{{"serializable_read", s.readCheck(true)}}
	readyz := []probeCheck{
		{"data_corruption", s.corruptionCheck},
		{"serializable_read", s.readCheck(true)},
		{"linearizable_read", s.readCheck(false)},
		// Tessera has no learners yet: every member votes.
		{"non_learner", func(context.Context) error { return nil }},
	}
	for path, checks := range map[string][]probeCheck{"/livez": livez, "/readyz": readyz} {
		mux.Handle(path, s.probeHandler(checks, true))
		for _, c := range checks {
			mux.Handle(path+"/"+c.name, s.probeHandler([]probeCheck{c}, false))
		}
	}
}

// versions is etcd's /version answer with Tessera's version added.
type versions struct {
	Server  string `json:"etcdserver"`
	Cluster string `json:"etcdcluster"`
	Storage string `json:"storage"`
	Tessera string `json:"tessera"`
}

func (s *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(versions{
		Server:  buildinfo.EtcdAPIVersion,
		Cluster: buildinfo.EtcdClusterVersion(),
		Storage: buildinfo.StorageVersion,
		Tessera: buildinfo.Version,
	})
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

// probeHandler runs checks (less those in ?exclude= when excludable) and
// answers as etcd's /livez and /readyz.
func (s *Server) probeHandler(checks []probeCheck, excludable bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowGet(w, r) {
			return
		}
		excluded := map[string]bool{}
		if excludable {
			for _, v := range r.URL.Query()["exclude"] {
				for _, name := range strings.Split(v, ",") {
					excluded[strings.TrimSpace(name)] = true
				}
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProbeTimeout)
		defer cancel()
		var out strings.Builder
		failed := false
		for _, c := range checks {
			if excluded[c.name] {
				continue
			}
			if err := c.run(ctx); err != nil {
				failed = true
				fmt.Fprintf(&out, "[-]%s failed: %v\n", c.name, err)
			} else {
				fmt.Fprintf(&out, "[+]%s ok\n", c.name)
			}
		}
		if failed {
			// As etcd: a failure always says which check failed.
			http.Error(w, out.String(), http.StatusServiceUnavailable)
			s.log.Debug("probe failed", "path", r.URL.Path, "checks", out.String())
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if _, ok := r.URL.Query()["verbose"]; ok {
			fmt.Fprint(w, out.String())
		}
		fmt.Fprint(w, "ok\n")
	}
}

// readCheck reads one key of every range: serializable (answered by
// replicas without a quorum round) or linearizable (every range has a
// leader with a quorum, and the cluster's clock answers).
func (s *Server) readCheck(serializable bool) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := s.router.Range(ctx, &pb.RangeRequest{
			Key: []byte{0}, RangeEnd: []byte{0}, Limit: 1, KeysOnly: true, Serializable: serializable,
		})
		return err
	}
}

// corruptionCheck fails while a CORRUPT alarm is active, as etcd's.
func (s *Server) corruptionCheck(ctx context.Context) error {
	resp, err := s.maint.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET, Alarm: pb.AlarmType_CORRUPT})
	if err != nil {
		return err
	}
	if len(resp.GetAlarms()) > 0 {
		return fmt.Errorf("alarm activated: %s", pb.AlarmType_CORRUPT)
	}
	return nil
}
