package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/modelcache"
	"github.com/smartmaint/smartmaint/models/artifact"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
)

func newModelsCmd(stdio IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Inspect and verify the edge's model cache",
		Long: `models shows which anomaly models this edge runs from its cache directory
(models.cache_dir, by default <data_dir>/models) and verifies them. The agent
fills the cache from the S3 manifest; these commands only read it, so they are
safe while the agent runs.`,
		Example: `  sm-edge models list --cache-dir /var/lib/smartmaint/models
  sm-edge models verify --cache-dir /var/lib/smartmaint/models --trusted-key /etc/smartmaint/models.pub
  sm-edge models verify --trusted-key models.pub pump7.smm`,
	}
	cmd.AddCommand(newModelsListCmd(stdio), newModelsVerifyCmd(stdio))
	return cmd
}

func newModelsListCmd(stdio IO) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the cached models per target",
		Example: `  sm-edge models list --cache-dir /var/lib/smartmaint/models`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--cache-dir is required")
			}
			st, err := modelcache.ReadStatus(dir)
			if err != nil {
				return err
			}
			if len(st.Targets) == 0 {
				fmt.Fprintln(stdio.Err, "no cached models: the edge scores with its built-in detectors")
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tACTIVE\tSINCE\tFALLBACKS")
			for _, t := range st.Targets {
				var fb []string
				for _, r := range t.Fallbacks {
					fb = append(fb, r.ID())
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Target.Key(), t.Active.ID(), t.Since.UTC().Format(time.RFC3339), strings.Join(fb, " "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for sha, why := range st.Rejected {
				fmt.Fprintf(stdio.Err, "rejected on this edge: %s (sha256 %s)\n", why, sha[:12])
			}
			for _, q := range st.Quarantined {
				fmt.Fprintf(stdio.Err, "corrupt file moved aside: %s\n", q)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "cache-dir", "", "model cache directory")
	return cmd
}

func newModelsVerifyCmd(stdio IO) *cobra.Command {
	var (
		dir      string
		keyFiles []string
	)
	cmd := &cobra.Command{
		Use:   "verify [ARTIFACT...]",
		Short: "Verify cached models or artifact files (SHA-256 and signature)",
		Long: `verify checks every model in --cache-dir against its recorded SHA-256 and every
given artifact file, then each signature against the --trusted-key files, and
that the edge can build the detector. It exits 1 when any check fails.`,
		Example: `  sm-edge models verify --cache-dir /var/lib/smartmaint/models --trusted-key models.pub
  sm-edge models verify --trusted-key models.pub pump7.smm`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" && len(args) == 0 {
				return errors.New("give --cache-dir or artifact files")
			}
			if len(keyFiles) == 0 {
				return errors.New("--trusted-key is required: nothing verifies without a trusted key")
			}
			var keys []ed25519.PublicKey
			for _, kf := range keyFiles {
				text, err := os.ReadFile(kf)
				if err != nil {
					return fmt.Errorf("read trusted key: %w", err)
				}
				k, err := artifact.ParsePublicKey(text)
				if err != nil {
					return fmt.Errorf("trusted key %s: %w", kf, err)
				}
				keys = append(keys, k)
			}
			v := modelcache.ArtifactVerifier{Trusted: keys}
			bad, good := 0, 0
			report := func(what string, m modelcache.Model, err error) {
				if err != nil {
					bad++
					fmt.Fprintf(stdio.Err, "FAIL %s: %v\n", what, err)
					return
				}
				good++
				fmt.Fprintf(stdio.Err, "ok   %s: %s (%s)\n", what, m.Payload.Ref(), m.Payload.Kind)
			}
			if dir != "" {
				st, err := modelcache.ReadStatus(dir)
				if err != nil {
					return err
				}
				for _, t := range st.Targets {
					for _, r := range append([]mm.Ref{t.Active}, t.Fallbacks...) {
						m, err := modelcache.VerifyCached(dir, r, v)
						report(t.Target.Key()+" "+r.ID(), m, err)
					}
				}
			}
			for _, path := range args {
				data, err := os.ReadFile(path)
				if err != nil {
					report(path, modelcache.Model{}, err)
					continue
				}
				m, err := v.Verify(data)
				report(path, m, err)
			}
			fmt.Fprintf(stdio.Err, "%d verified, %d failed\n", good, bad)
			if bad > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d model(s) failed verification", bad)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "cache-dir", "", "model cache directory to verify")
	cmd.Flags().StringArrayVar(&keyFiles, "trusted-key", nil, "public key file trusted to sign models (repeatable)")
	return cmd
}
