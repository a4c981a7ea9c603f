package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/agent"
	"github.com/smartmaint/smartmaint/edge/internal/config"
	"github.com/smartmaint/smartmaint/edge/internal/memlimit"
	"github.com/smartmaint/smartmaint/shared/version"
)

func newRunCmd(stdio IO) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the edge agent: subscribe, map, score, buffer and forward",
		Long: `Runs the agent until SIGINT/SIGTERM. It connects to the broker (tcp, TLS or
mTLS) with a persistent session, subscribes to the configured topic patterns,
maps every message to readings and hands them to the durable queue; each QoS
1/2 message is acknowledged only after its readings are committed. On
SIGTERM it stops taking messages, drains and acknowledges what it received,
then exits. The admin endpoint (/metrics, /healthz, /readyz, /status)
listens on admin.listen (default 127.0.0.1:9470); /metrics and /status need
the bearer token in admin.token_file or, when none is set, DATA_DIR/admin.token
(generated on first start).`,
		Example: "  sm-edge run --config /etc/sm-edge/edge.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, profiles, probs := config.Load(file)
			if len(probs) > 0 {
				for _, p := range probs {
					fmt.Fprintln(stdio.Err, p.String())
				}
				return &ExitError{Code: 1, Err: fmt.Errorf("%s: %d problem(s); run `sm-edge config validate`", file, len(probs))}
			}
			logger := newLogger(stdio, cfg.Log)
			memlimit.Apply(cfg.MemoryLimit, logger.With("component", "memlimit"))
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			mapper, err := agent.NewMapper(cfg, profiles, reg, logger)
			if err != nil {
				return err
			}
			p, err := agent.OpenPipeline(ctx, cfg, mapper, version.Get().Version, logger, reg)
			if err != nil {
				return err
			}
			defer func() {
				if err := p.Close(); err != nil {
					logger.Error("close buffer", "err", err)
				}
			}()
			a, err := agent.New(agent.Options{
				Config: cfg, Profiles: profiles, Mapper: mapper, Sink: p,
				Ready: p.Ready, Extend: p.Extend,
				Logger: logger, Registry: reg, Version: version.Get().String(),
			})
			if err != nil {
				return err
			}
			p.SetBroker(a.BrokerState)
			// The agent stops taking messages and drains what it received
			// into the queue; only then does the forwarder stop, and the
			// queue is closed last (deferred above).
			pctx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
			defer stopPipeline()
			var perr error
			pdone := make(chan struct{})
			go func() { perr = p.Run(pctx); close(pdone) }()
			aerr := a.Run(ctx)
			stopPipeline()
			<-pdone
			return errors.Join(aerr, perr)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (required)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func newLogger(stdio IO, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(stdio.Err, opts))
	}
	return slog.New(slog.NewJSONHandler(stdio.Err, opts))
}
