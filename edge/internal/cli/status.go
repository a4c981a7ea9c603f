package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
)

func newStatusCmd(stdio IO) *cobra.Command {
	var addr string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [--admin ADDR]",
		Short: "Show the running agent's broker state, rates, sensors and errors",
		Long: `Reads the running agent's local admin endpoint (/status) and prints the broker
connection state, subscriptions, readings per second, sensors seen, unmapped
topics, decode errors by topic and reason, and the latest dead letters.`,
		Example: `  sm-edge status
  sm-edge status --admin 127.0.0.1:9470 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := fetchStatus(cmd.Context(), addr, timeout)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdio.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(stdio.Out, st)
		},
	}
	cmd.Flags().StringVar(&addr, "admin", admin.DefaultListen, "admin endpoint of the agent (host:port or URL)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the raw status document as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the agent")
	return cmd
}

func fetchStatus(ctx context.Context, addr string, timeout time.Duration) (*admin.Status, error) {
	u := addr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	u = strings.TrimSuffix(u, "/") + "/status"
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the agent's admin endpoint at %s (is sm-edge running? see admin.listen): %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("admin endpoint %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	var st admin.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("admin endpoint %s: bad status document: %w", u, err)
	}
	return &st, nil
}

func printStatus(w io.Writer, st *admin.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(f string, a ...any) { fmt.Fprintf(tw, f, a...) }
	p("edge\t%s (sm-edge %s), up %s\n", st.EdgeID, st.Version, st.Now.Sub(st.StartedAt).Round(time.Second))
	b := st.Broker
	since := ""
	if !b.ConnectedSince.IsZero() {
		since = ", since " + b.ConnectedSince.UTC().Format(time.RFC3339)
	}
	p("broker\t%s %s (client id %s%s)\n", b.State, b.URL, b.ClientID, since)
	p("\treconnects %d, received %d, queued %d\n", b.Reconnects, b.Received, b.Queued)
	if b.LastError != "" {
		p("\tlast error: %s\n", b.LastError)
	}
	m := st.Mapping
	p("readings\t%.1f/s now, %d mapped from %d messages, %d rejected\n", st.ReadingsPerSecond, m.Readings, m.Messages, m.Rejected)
	p("sink\t%d writes, %d failures", st.Sink.Writes, st.Sink.Failures)
	if st.Sink.LastError != "" {
		p(", last error: %s", st.Sink.LastError)
	}
	p("\n")
	if q := st.Queue; q != nil {
		p("queue\t%d records, %s of %s budget, oldest %s, runway %.1f h\n",
			q.Records, byteSize(q.Bytes), byteSize(q.MaxBytes), q.OldestAge.Round(time.Second), q.RunwayHours)
		if len(q.Drops) > 0 {
			p("\tdropped:")
			for _, r := range sortedKeys(q.Drops) {
				p(" %s=%d", r, q.Drops[r])
			}
			p("\n")
		}
	}
	if u := st.Uplink; u != nil {
		state := "down"
		if u.Up {
			state = "up"
		}
		p("uplink\t%s", state)
		if !u.LastSuccess.IsZero() {
			p(", last batch acknowledged %s", u.LastSuccess.UTC().Format(time.RFC3339))
		}
		if u.ClockOffsetKnown {
			p(", clock offset %s", u.ClockOffset.Round(time.Millisecond))
		}
		p("\n")
		for _, a := range u.Alarms {
			p("\tALARM %s\n", a)
		}
		if u.LastError != "" {
			p("\tlast error: %s\n", u.LastError)
		}
	}
	if len(st.Models) == 0 {
		p("models\tbuilt-in detectors\n")
	}
	for _, m := range st.Models {
		p("models\t%s@%s (%d sensors)\n", m.Name, m.Version, m.Sensors)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nSubscriptions (%d)\n", len(st.Subscriptions))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PATTERN\tFILTER\tQOS\tFORMAT")
	for _, s := range st.Subscriptions {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", s.Pattern, s.Filter, s.QoS, s.Format)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nSensors seen (%d)\n", len(m.Sensors))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(m.Sensors) > 0 {
		fmt.Fprintln(tw, "  SENSOR\tPROFILE\tREADINGS\tLAST")
	}
	const maxRows = 50
	for i, s := range m.Sensors {
		if i == maxRows {
			fmt.Fprintf(tw, "  … %d more (use --json)\n", len(m.Sensors)-maxRows)
			break
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", s.ID, s.Profile, s.Readings, s.Last.Format(time.RFC3339))
	}
	tw.Flush()

	printCounts := func(title string, cs []struct {
		topic, reason string
		count         uint64
	}) {
		fmt.Fprintf(w, "\n%s (%d)\n", title, len(cs))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if len(cs) > 0 {
			fmt.Fprintln(tw, "  TOPIC\tREASON\tCOUNT")
		}
		for i, c := range cs {
			if i == maxRows {
				fmt.Fprintf(tw, "  … %d more (use --json)\n", len(cs)-maxRows)
				break
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", c.topic, c.reason, c.count)
		}
		tw.Flush()
	}
	type row = struct {
		topic, reason string
		count         uint64
	}
	var unmapped, errs []row
	for _, c := range m.Unmapped {
		unmapped = append(unmapped, row{c.Topic, c.Reason, c.Count})
	}
	for _, c := range m.Errors {
		errs = append(errs, row{c.Topic, c.Reason, c.Count})
	}
	printCounts("Unmapped topics", unmapped)
	printCounts("Decode errors", errs)

	byReason := map[string]uint64{}
	for _, c := range m.Errors {
		byReason[c.Reason] += c.Count
	}
	if len(byReason) > 0 {
		fmt.Fprint(w, "  by reason:")
		for _, r := range sortedKeys(byReason) {
			fmt.Fprintf(w, " %s=%d", r, byReason[r])
		}
		fmt.Fprintln(w)
	}
	if len(m.DeadLetters) > 0 {
		fmt.Fprintf(w, "\nLatest dead letters\n")
		for i, d := range m.DeadLetters {
			if i == 5 {
				break
			}
			payload := string(d.Payload)
			if len(payload) > 80 {
				payload = payload[:80] + "…"
			}
			fmt.Fprintf(w, "  %s %s [%s] %s: %q\n", d.Time.UTC().Format(time.RFC3339), d.Topic, d.Reason, d.Error, payload)
		}
	}
	return nil
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// byteSize renders n bytes with a binary unit, e.g. "12.5 MiB".
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
