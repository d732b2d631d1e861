package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/router"
)

// snapshotCmd is `tessctl snapshot save|status|restore`, etcdctl's and
// etcdutl's snapshot commands for Tessera's cluster backups
// (docs/snapshot.md).
func snapshotCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up a whole cluster at one revision, describe a backup, restore one into new data dirs",
	}
	cmd.AddCommand(snapshotSaveCmd(g), snapshotStatusCmd(g), snapshotRestoreCmd())
	return cmd
}

func snapshotSaveCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a backup of the whole cluster (every range, at one revision) to FILE",
		Long: `save asks the first endpoint for a backup (etcd's Maintenance.Snapshot, as
etcdctl snapshot save), writes it to FILE.part, checks it through (checksum,
structure) and renames it to FILE. A progress bar shows on a terminal.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, took, err := saveSnapshot(cmd.Context(), g, args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Snapshot saved at %s (revision %d, %d keys in %d ranges, %d bytes in %v)\n",
				args[0], info.Header.GetRevision(), info.Footer.GetKeys(), len(info.Header.GetRanges()), info.Size, took.Round(time.Millisecond))
			return nil
		},
	}
}

func saveSnapshot(ctx context.Context, g *globalFlags, path string, progress io.Writer) (*router.BackupInfo, time.Duration, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: g.endpoints[:1], DialTimeout: g.dialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, 0, fmt.Errorf("tessctl: connect to %s: %w", g.endpoints[0], err)
	}
	defer cli.Close()
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("tessctl: %w", err)
	}
	defer os.Remove(part) // after the rename: nothing
	defer f.Close()
	start := time.Now()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("tessctl: snapshot from %s: %w", g.endpoints[0], err)
	}
	defer rc.Close()
	var w io.Writer = f
	if pf, ok := progress.(*os.File); ok && term.IsTerminal(int(pf.Fd())) {
		bar := pb.New64(0)
		bar.SetTemplateString(`{{counters . }} {{speed . }} {{etime . }}`)
		bar.Set(pb.Bytes, true)
		bar.SetWriter(progress)
		bar.Start()
		defer bar.Finish()
		w = bar.NewProxyWriter(f)
	}
	if _, err := io.Copy(w, rc); err != nil {
		return nil, 0, fmt.Errorf("tessctl: snapshot from %s: %w", g.endpoints[0], err)
	}
	if err := f.Sync(); err != nil {
		return nil, 0, fmt.Errorf("tessctl: %w", err)
	}
	took := time.Since(start)
	info, err := readBackup(part)
	if err != nil {
		return nil, 0, err
	}
	if err := os.Rename(part, path); err != nil {
		return nil, 0, fmt.Errorf("tessctl: %w", err)
	}
	return info, took, nil
}

func readBackup(path string) (*router.BackupInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tessctl: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("tessctl: %w", err)
	}
	info, err := router.ReadBackup(f, st.Size(), false, nil)
	if err != nil {
		return nil, fmt.Errorf("tessctl: %s: %w", path, err)
	}
	return info, nil
}

// snapshotStatus is what snapshot status prints (-w json: this object).
type snapshotStatus struct {
	Hash       string `json:"hash"`
	Revision   int64  `json:"revision"`
	TotalKey   uint64 `json:"totalKey"`
	TotalSize  int64  `json:"totalSize"`
	ValueBytes uint64 `json:"valueBytes"`
	Ranges     []struct {
		ID    uint64 `json:"id"`
		Span  string `json:"span"`
		Keys  uint64 `json:"keys"`
		Nodes int    `json:"replicas"`
	} `json:"ranges"`
	Version  string    `json:"version"`
	Node     string    `json:"node"`
	Created  time.Time `json:"created"`
	Compact  int64     `json:"compactRevision,omitempty"`
	Checksum string    `json:"sha256"`
}

func snapshotStatusCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status FILE",
		Short: "Describe a backup: revision, keys, size, ranges, hash (checks it through)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := readBackup(args[0])
			if err != nil {
				return err
			}
			h := info.Header
			st := snapshotStatus{
				Hash:       fmt.Sprintf("%x", info.Hash[:4]),
				Revision:   h.GetRevision(),
				TotalKey:   info.Footer.GetKeys(),
				TotalSize:  info.Size,
				ValueBytes: info.Footer.GetValueBytes(),
				Version:    h.GetServerVersion(),
				Node:       h.GetNodeName(),
				Created:    time.Unix(0, h.GetCreatedUnixNano()).UTC(),
				Compact:    h.GetCompactRevision(),
				Checksum:   fmt.Sprintf("%x", info.Hash),
			}
			for _, d := range h.GetRanges() {
				st.Ranges = append(st.Ranges, struct {
					ID    uint64 `json:"id"`
					Span  string `json:"span"`
					Keys  uint64 `json:"keys"`
					Nodes int    `json:"replicas"`
				}{d.GetRangeId(), spanString(d.GetStartKey(), d.GetEndKey()), info.KeysPerRange[d.GetRangeId()], len(d.GetReplicas())})
			}
			format, _ := parseFormat(g.writeOut)
			out := cmd.OutOrStdout()
			if format == formatJSON {
				return writeJSON(out, st)
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "HASH\tREVISION\tTOTAL KEYS\tTOTAL SIZE\tRANGES\tVERSION")
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", st.Hash, st.Revision, st.TotalKey, st.TotalSize, len(st.Ranges), st.Version)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out)
			tw = newTable(out)
			fmt.Fprintln(tw, "RANGE\tSPAN\tKEYS")
			for _, r := range st.Ranges {
				fmt.Fprintf(tw, "%d\t%s\t%d\n", r.ID, r.Span, r.Keys)
			}
			return tw.Flush()
		},
	}
}

func snapshotRestoreCmd() *cobra.Command {
	cfg := server.RestoreConfig{}
	var token string
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Build a new member's data dir from a backup (run once per member, etcdutl's flags)",
		Long: `restore checks FILE through (checksum and structure) and refuses a corrupt or
truncated one before writing anything, then writes the data dir of member
--name of the new cluster --initial-cluster: the backup's ranges (same split
keys), every key as at the backup's revision with the same revisions and
versions. Start every member with the same --initial-cluster and
--initial-cluster-state new.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.SnapshotPath = args[0]
			res, err := server.Restore(cfg)
			if err != nil {
				return err
			}
			_ = token // accepted as etcdutl's; the cluster id comes from --initial-cluster
			dir := cfg.DataDir
			if dir == "" {
				dir = cfg.Name + ".tessera"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored member %s (node %d) into %s: revision %d, %d ranges, %d keys\n",
				cfg.Name, res.NodeID, dir, res.Info.Header.GetRevision(), res.Ranges, res.Keys)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "default", "human-readable name for this member")
	f.StringVar(&cfg.DataDir, "data-dir", "", "path to the data directory (default ${name}.tessera); must not exist")
	f.StringVar(&cfg.InitialCluster, "initial-cluster", "", "initial cluster configuration for restore bootstrap: name=peerURL,...")
	f.StringVar(&token, "initial-cluster-token", "etcd-cluster", "accepted for etcdutl compatibility (Tessera derives the cluster id from --initial-cluster)")
	f.StringSliceVar(&cfg.InitialAdvertisePeerURLs, "initial-advertise-peer-urls", []string{"http://localhost:2380"}, "this member's peer URLs")
	f.BoolVar(&cfg.SkipHashCheck, "skip-hash-check", false, "ignore the SHA-256 trailer (the structure is still checked)")
	return cmd
}

func spanString(start, end []byte) string {
	s := fmt.Sprintf("[%q, %q)", start, end)
	if len(end) == 0 {
		s = fmt.Sprintf("[%q, ∞)", start)
	}
	return s
}
