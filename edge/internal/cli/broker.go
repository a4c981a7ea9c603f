package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/broker"
)

func newBrokerCmd(stdio IO) *cobra.Command {
	var (
		cfg       broker.Config
		logLevel  string
		statEvery time.Duration
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run an embedded MQTT broker that does not drop QoS 1 messages",
		Long: `broker runs an MQTT 3.1.1/5 broker inside sm-edge, for a demo or a site without
one. Unlike the defaults of most brokers it never drops QoS 1 messages for a
slow or disconnected persistent subscriber: publishers are held back instead
once a subscriber has ` + fmt.Sprint(broker.DefaultHighWater) + ` unacknowledged messages queued.
With --data-dir, persistent sessions and their queued messages survive a
restart of the broker. Anonymous clients are allowed: bind it to loopback or
a trusted network.`,
		Example: `  sm-edge broker --listen 127.0.0.1:1883
  sm-edge broker --listen 127.0.0.1:1883 --data-dir /var/lib/sm-edge/broker`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: %w", logLevel, err)
			}
			log := slog.New(slog.NewTextHandler(stdio.Err, &slog.HandlerOptions{Level: level}))
			b, err := broker.New(cfg, log)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if statEvery > 0 {
				go func() {
					t := time.NewTicker(statEvery)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
							s := b.Stats()
							log.Info("broker stats", "component", "broker", "clients", s.Clients, "received", s.Received, "sent", s.Sent, "held", s.Held, "adopted", s.Adopted, "dropped", s.Dropped)
						}
					}
				}()
			}
			if err := b.Run(ctx); err != nil {
				return err
			}
			s := b.Stats()
			fmt.Fprintf(stdio.Err, "broker stopped: received %d, sent %d, held %d, dropped %d\n", s.Received, s.Sent, s.Held, s.Dropped)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:1883", "TCP address to listen on")
	f.StringVar(&cfg.DataDir, "data-dir", "", "keep sessions and queued messages in this directory across restarts")
	f.IntVar(&cfg.HighWater, "high-water", broker.DefaultHighWater, "queued messages per subscriber before publishers are held")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&statEvery, "stats-every", time.Minute, "log counters this often (0: never)")
	return cmd
}
