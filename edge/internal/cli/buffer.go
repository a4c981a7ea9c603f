package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
)

func newBufferCmd(stdio IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "buffer",
		Short: "Inspect the durable queue of a stopped agent",
		Long: `Inspect the durable queue (bbolt file "queue.db" in the agent's data
directory). The agent must be stopped: a running agent holds the file locked.`,
		Example: "  sm-edge buffer stats --data-dir /var/lib/sm-edge\n" +
			"  sm-edge buffer export --data-dir /var/lib/sm-edge --out backlog.jsonl",
	}
	cmd.AddCommand(newBufferStatsCmd(stdio), newBufferExportCmd(stdio))
	return cmd
}

// queueFile resolves --data-dir / --file to the queue file's path.
func queueFile(dataDir, file string) (string, error) {
	switch {
	case file != "":
		return file, nil
	case dataDir != "":
		return filepath.Join(dataDir, buffer.FileName), nil
	}
	return "", errors.New("give --data-dir (the agent's data_dir) or --file")
}

func openableQueue(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("queue file %q: %w", path, err)
	}
	return nil
}

func newBufferStatsCmd(stdio IO) *cobra.Command {
	var dataDir, file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print what waits in the queue: records, bytes, oldest age, dead letters",
		Example: "  sm-edge buffer stats --data-dir /var/lib/sm-edge\n" +
			"  sm-edge buffer stats --file /var/lib/sm-edge/queue.db --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := queueFile(dataDir, file)
			if err != nil {
				return err
			}
			if err := openableQueue(path); err != nil {
				return err
			}
			s, err := buffer.Inspect(path)
			if errors.Is(err, buffer.ErrLocked) {
				return fmt.Errorf("%w (stop the agent first, or use `sm-edge status` on a running one)", err)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(stdio.Out).Encode(s)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "file:          %s (%s on disk)\n", s.Path, human(s.FileBytes))
			fmt.Fprintf(&b, "records:       %d (%s)\n", s.Records, human(s.Bytes))
			fmt.Fprintf(&b, "  readings:    %d (%s)\n", s.Readings, human(s.ReadingsBytes))
			fmt.Fprintf(&b, "  events+gaps: %d (%s)\n", s.Priority, human(s.PriorityBytes))
			if s.Oldest.IsZero() {
				fmt.Fprintf(&b, "oldest:        -\n")
			} else {
				fmt.Fprintf(&b, "oldest:        %s (%s ago)\n", s.Oldest.UTC().Format(time.RFC3339), s.OldestAge.Round(time.Second))
			}
			fmt.Fprintf(&b, "dead letters:  %d (%s)\n", s.DeadLetters, human(s.DeadLetterBytes))
			fmt.Fprintf(&b, "last seq:      %d\n", s.LastSeq)
			_, err = fmt.Fprint(stdio.Out, b.String())
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the agent's data directory (holds "+buffer.FileName+")")
	cmd.Flags().StringVar(&file, "file", "", "the queue file itself, instead of --data-dir")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newBufferExportCmd(stdio IO) *cobra.Command {
	var dataDir, file, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write every queued record (readings, events, gaps, dead letters) as JSON lines",
		Long: `Write every record of a stopped agent's queue as JSON lines, one object per
record with a "kind" of reading, event, gap, dead_letter or corrupt. The queue
is not modified. --out - writes to standard output.`,
		Example: "  sm-edge buffer export --data-dir /var/lib/sm-edge --out backlog.jsonl\n" +
			"  sm-edge buffer export --data-dir /var/lib/sm-edge --out - | jq -c 'select(.kind==\"gap\")'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := queueFile(dataDir, file)
			if err != nil {
				return err
			}
			if out == "" {
				return errors.New("--out FILE is required (- for standard output)")
			}
			if err := openableQueue(path); err != nil {
				return err
			}
			if out == "-" {
				_, err := buffer.Export(path, stdio.Out)
				return err
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp*")
			if err != nil {
				return fmt.Errorf("create %q: %w", out, err)
			}
			defer os.Remove(tmp.Name())
			n, err := buffer.Export(path, tmp)
			if errors.Is(err, buffer.ErrLocked) {
				_ = tmp.Close()
				return fmt.Errorf("%w (stop the agent first)", err)
			}
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(tmp.Name(), out)
			}
			if err != nil {
				return fmt.Errorf("export to %q: %w", out, err)
			}
			fmt.Fprintf(stdio.Err, "wrote %d records to %s\n", n, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the agent's data directory (holds "+buffer.FileName+")")
	cmd.Flags().StringVar(&file, "file", "", "the queue file itself, instead of --data-dir")
	cmd.Flags().StringVar(&out, "out", "", "output file (JSON lines), - for standard output")
	return cmd
}

// human renders a byte count with a binary unit.
func human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
