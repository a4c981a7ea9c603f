// Command sm-collector is the Smart Maintenance cloud service: it takes
// batches from edges, stores them in PostgreSQL/TimescaleDB, raises alerts
// and serves the operations API. See `sm-collector --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/smartmaint/smartmaint/collector/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
