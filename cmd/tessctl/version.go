package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/cmd/buildinfo"
)

// versionCmd is `tessctl version`: the client's version (it asks no server).
func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tessctl's version",
		Args:  cobra.NoArgs,
		// No endpoint needed: skip the root's checks.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), buildinfo.Lines("tessctl"))
		},
	}
}

// withHint adds what to do to an error that means no endpoint answered
// (nothing listens there, or it did not answer in time).
func withHint(err error, endpoints []string) error {
	if !noAnswer(err) {
		return err
	}
	return fmt.Errorf("%w\nhint: no endpoint answered at %s. Is the cluster running? --endpoints takes the client URLs of any of its members (tessera dev prints them: tessctl --endpoints=$E status)",
		err, strings.Join(endpoints, ","))
}

func noAnswer(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	st, ok := status.FromError(err)
	return ok && (st.Code() == codes.DeadlineExceeded || st.Code() == codes.Unavailable)
}
