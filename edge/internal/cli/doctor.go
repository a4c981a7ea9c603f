package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/doctor"
	"github.com/smartmaint/smartmaint/shared/version"
)

func newDoctorCmd(stdio IO) *cobra.Command {
	var (
		file    string
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "doctor --config FILE",
		Short: "Self-test after install: config, broker, collector, clock, disk, queue, models",
		Long: `doctor checks everything an edge box needs and says, for each problem, what is
wrong and what to do:

  config      the file loads and validates (FILE:LINE: field: message)
  broker      TCP, TLS handshake and certificate expiry, MQTT CONNECT with the
              configured credentials (client id "<client_id>-doctor", clean
              session, so the agent's session is never touched), and a
              subscription to each configured pattern
  collector   DNS, TCP, TLS and certificate expiry, the token file, and an
              authenticated status report (alarm "doctor") proving the token
  clock       offset to the collector's clock (warn > 2 s, fail > 60 s)
  disk        free space, writability and runway of the data directory
  buffer      the queue file's health (read-only, agent stopped) or the
              running agent's backlog and alarms
  models      cached model artifacts verify (as 'sm-edge models verify')
  admin       a running agent's /healthz and /readyz

The report goes to stdout (--json for scripts). The exit status is 1 when any
check fails, 0 otherwise (warnings included). The token and passwords are never
printed.`,
		Example: `  sm-edge doctor --config /etc/sm-edge/edge.yaml
  sm-edge doctor --config /etc/sm-edge/edge.yaml --timeout 5s --json | jq '.results[] | select(.status=="fail")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout must be positive, got %s", timeout)
			}
			rep := doctor.Run(cmd.Context(), doctor.Options{
				ConfigFile: file,
				Timeout:    timeout,
				Version:    version.Get().Version,
				Getenv:     os.Getenv,
			})
			var err error
			if asJSON {
				err = rep.WriteJSON(stdio.Out)
			} else {
				err = rep.WriteText(stdio.Out)
			}
			if err != nil {
				return err
			}
			if n := rep.Failed(); n > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d check(s) failed", n)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "limit for each network step (dial, handshake, request)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
