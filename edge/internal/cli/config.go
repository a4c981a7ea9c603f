package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/config"
)

func newConfigCmd(stdio IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the configuration file or print an example",
		Example: `  sm-edge config example > /etc/sm-edge/edge.yaml
  sm-edge config validate --config /etc/sm-edge/edge.yaml`,
	}
	cmd.AddCommand(newConfigValidateCmd(stdio), newConfigExampleCmd(stdio))
	return cmd
}

func newConfigValidateCmd(stdio IO) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a config file offline and report every problem with FILE:LINE",
		Long: `Checks the config file without touching the network: YAML syntax, unknown
keys, types, values, topic patterns, profile references, and that referenced
files (password file, TLS CA/certificate/key, profile directories) exist and
parse. Every problem is printed as FILE:LINE: field.path: message. The exit
status is 1 when there are problems.`,
		Example: "  sm-edge config validate --config /etc/sm-edge/edge.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, profiles, probs := config.Load(file)
			for _, p := range probs {
				fmt.Fprintln(stdio.Err, p.String())
			}
			if len(probs) > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%s: %d problem(s)", file, len(probs))}
			}
			fmt.Fprintf(stdio.Err, "%s: ok (%d profiles available)\n", file, len(profiles))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (required)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newConfigExampleCmd(stdio IO) *cobra.Command {
	return &cobra.Command{
		Use:     "example",
		Short:   "Print an annotated example config that validates",
		Example: "  sm-edge config example > edge.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := stdio.Out.Write(config.Example())
			return err
		},
	}
}
