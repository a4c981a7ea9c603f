// Command sm-edge is the Smart Maintenance edge agent: it subscribes to a
// plant's MQTT broker, maps and scores readings, keeps them durably in a
// local queue and forwards them to sm-collector. See `sm-edge --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/smartmaint/smartmaint/edge/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
