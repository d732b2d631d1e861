package main

import (
	"github.com/spf13/pflag"

	"github.com/tesseradb/tessera/cmd/tessera/server"
)

// addMovesFlags adds the replica-move flags.
func addMovesFlags(f *pflag.FlagSet, c *server.MovesConfig) {
	f.Int64Var(&c.SnapshotRate, "snapshot-rate", 32<<20, "bytes per second of all replica snapshots this member sends (moves, catching up a lagging replica)")
}
