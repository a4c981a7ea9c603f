package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/smartmaint/smartmaint/edge/internal/mapping"
	"github.com/smartmaint/smartmaint/edge/internal/mqttsub"
)

func newDiscoverCmd(stdio IO) *cobra.Command {
	var (
		broker   = mqttsub.Default()
		topic    string
		duration time.Duration
	)
	cmd := &cobra.Command{
		Use:   "discover --broker URL [--topic '#'] [--duration 30s]",
		Short: "Watch a broker and propose the subscriptions section of the config",
		Long: `Subscribes read-only (QoS 0, clean session) to a topic filter for a while and
prints, as YAML you can paste into the config: a table of the topics seen
with message rates, the inferred payload format and fields as comments, and
a proposed subscriptions section (topic patterns with named levels, JSON
paths, profile rules guessed from sensor names). Review the proposal:
discover cannot know which levels name your sites, lines and assets.`,
		Example: `  sm-edge discover --broker tcp://gateway.plant.local:1883
  sm-edge discover --broker mqtts://broker:8883 --ca-file ca.pem --topic 'plant/#' --duration 1m > proposal.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := broker.Validate(); err != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("broker options: %w", err)}
			}
			d := mapping.NewDiscovery()
			fmt.Fprintf(stdio.Err, "watching %s on %s for %s …\n", topic, broker.URL, duration)
			ctx, cancel := context.WithTimeout(cmd.Context(), duration)
			defer cancel()
			start := time.Now()
			err := mqttsub.Watch(ctx, broker, "sm-edge-discover-"+randomHex(4), topic, func(t string, p []byte) {
				d.Observe(t, p, time.Now())
			})
			if err != nil {
				return err
			}
			return writeDiscovery(stdio.Out, d, time.Since(start))
		},
	}
	f := cmd.Flags()
	f.StringVar(&broker.URL, "broker", "", "broker URL, e.g. tcp://127.0.0.1:1883 (required)")
	f.StringVar(&topic, "topic", "#", "topic filter to watch")
	f.DurationVar(&duration, "duration", 30*time.Second, "how long to watch")
	f.StringVar(&broker.Username, "username", "", "broker username")
	f.StringVar(&broker.PasswordFile, "password-file", "", "file holding the broker password (or set "+mqttsub.DefaultPasswordEnv+")")
	f.StringVar(&broker.TLS.CAFile, "ca-file", "", "CA certificate (PEM) to verify a TLS broker")
	f.StringVar(&broker.TLS.CertFile, "cert-file", "", "client certificate (PEM) for mTLS")
	f.StringVar(&broker.TLS.KeyFile, "key-file", "", "client key (PEM) for mTLS")
	_ = cmd.MarkFlagRequired("broker")
	return cmd
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeDiscovery prints the report as YAML comments followed by the
// proposed subscriptions, so the whole output can be pasted.
func writeDiscovery(w io.Writer, d *mapping.Discovery, observed time.Duration) error {
	topics := d.Topics()
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TOPIC\tMSGS\tMSG/S\tFORMAT\tFIELDS\tSAMPLE\n")
	for _, t := range topics {
		fields := ""
		if t.Format == "json" || t.Format == "json-array" {
			var parts []string
			if t.Items != "" {
				parts = append(parts, "items="+t.Items)
			}
			if t.Sensor != "" {
				parts = append(parts, "sensor="+t.Sensor)
			}
			parts = append(parts, "value="+orNone(t.Value), "timestamp="+orNone(t.Timestamp))
			if t.Quality != "" {
				parts = append(parts, "quality="+t.Quality)
			}
			parts = append(parts, "all="+strings.Join(t.Fields, ","))
			fields = strings.Join(parts, " ")
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%s\t%s\n", t.Topic, t.Count, t.Rate(observed), t.Format, fields, t.Sample)
	}
	tw.Flush()
	fmt.Fprintf(w, "# sm-edge discover: %d topics in %s", len(topics), observed.Round(time.Second))
	if d.Dropped > 0 {
		fmt.Fprintf(w, " (%d messages on further topics not tracked)", d.Dropped)
	}
	fmt.Fprintln(w)
	for _, line := range strings.Split(strings.TrimRight(sb.String(), "\n"), "\n") {
		fmt.Fprintf(w, "#   %s\n", line)
	}
	subs := d.Proposal()
	if len(subs) == 0 {
		fmt.Fprintln(w, "# No topic with a supported payload (plain number, JSON, Sparkplug B) was seen.")
		return nil
	}
	fmt.Fprintln(w, "#")
	fmt.Fprintln(w, "# Proposed mapping (review the level names; give sensors without a rule a profile):")
	out, err := yaml.Marshal(struct {
		Subscriptions []mapping.Subscription `yaml:"subscriptions"`
	}{subs})
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "?"
	}
	return s
}
