// Package cli holds the sm-edge command tree (cobra). Each command lives in
// its own file, parses flags into a config and hands over to the packages
// that do the work; main only sets up signals and calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// ExitError carries a specific exit status out of a command, for example
// 1 from `config validate` when the config has problems. Its message has
// already been printed when Silent is set.
type ExitError struct {
	Code   int
	Err    error
	Silent bool
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// IO is where commands read and write. Secrets and ids meant for scripts go
// alone to Out; everything else (progress, logs, hints) goes to Err.
type IO struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// Main runs the command line args and returns the process exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := NewRoot(IO{In: stdin, Out: stdout, Err: stderr})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if !ee.Silent {
			fmt.Fprintf(stderr, "sm-edge: %v\n", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(stderr, "sm-edge: %v\n", err)
	return 2
}

// NewRoot builds the whole command tree.
func NewRoot(stdio IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "sm-edge",
		Short: "Smart Maintenance edge agent",
		Long: `sm-edge subscribes to a plant MQTT broker, maps topics to sensors, scores each
reading with local anomaly models, keeps everything in a durable local queue
and forwards it to sm-collector.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdio.In)
	root.SetOut(stdio.Err)
	root.SetErr(stdio.Err)
	root.AddCommand(
		newVersionCmd(stdio),
		newScoreCmd(stdio),
		newModelsCmd(stdio),
		newDoctorCmd(stdio),
		newRunCmd(stdio),
		newConfigCmd(stdio),
		newDiscoverCmd(stdio),
		newStatusCmd(stdio),
		newBufferCmd(stdio),
		newBrokerCmd(stdio),
		newSimulateCmd(stdio),
	)
	return root
}
