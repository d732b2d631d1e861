// Command tessbench measures an etcd-API endpoint (etcd or Tessera) with the
// workloads Tessera's performance claims are made of, and compares Tessera
// with etcd on one machine in one run (tessbench compare).
//
//	tessbench put --endpoints 127.0.0.1:2379 --clients 16 --duration 10s
//	tessbench range --consistency s --rate 2000 --json
//	tessbench compare --tessera-bin ./tessera --duration 15s
//
// See docs/benchmarks.md for the method and the numbers.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tty := term.IsTerminal(int(os.Stdout.Fd()))
	if err := newRootCmd(os.Stdout, os.Stderr, tty).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tessbench:", err)
		os.Exit(1)
	}
}
