package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/collector/internal/server"
	"github.com/smartmaint/smartmaint/collector/internal/store"
)

func newServeCmd(stdio IO) *cobra.Command {
	var cfgFile, listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve ingest and the operations API",
		Long: `serve authenticates edges, stores their batches and serves the data API
until interrupted (SIGINT/SIGTERM), then drains in-flight requests.

Settings come from --config (strict YAML), then the environment
(DATABASE_URL, SM_COLLECTOR_LISTEN, SM_COLLECTOR_TLS_CERT_FILE, ...), then
flags.`,
		Example: `  DATABASE_URL=postgres://collector@db/smartmaint sm-collector serve
  sm-collector serve --config /etc/sm-collector/collector.yml --listen :8443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgFile, func(c *config.Config) {
				if listen != "" {
					c.Listen = listen
				}
			})
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, stdio.Err)
			ctx := cmd.Context()
			srv, err := server.New(ctx, cfg, logger)
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&cfgFile, "config", "", "config file (YAML)")
	cmd.Flags().StringVar(&listen, "listen", "", "API address, overriding the config (e.g. :8080)")
	return cmd
}

// loadConfig loads the config file (or defaults) with environment
// overrides; override applies flags before validation.
func loadConfig(path string, override func(*config.Config)) (config.Config, error) {
	cfg, err := config.Load(path, os.Getenv)
	if override == nil || err != nil {
		if err != nil {
			return config.Config{}, &ExitError{Code: 2, Err: fmt.Errorf("config:\n%w", err)}
		}
		return cfg, nil
	}
	override(&cfg)
	if err := cfg.Validate(); err != nil {
		return config.Config{}, &ExitError{Code: 2, Err: fmt.Errorf("config:\n%w", err)}
	}
	return cfg, nil
}

// newLogger builds the process logger on w from the log settings.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// withStore loads the config, opens the store (logging warnings only, so
// admin commands stay quiet) and runs f with it.
func withStore(ctx context.Context, stdio IO, cfgFile string, f func(*store.DB) error) error {
	cfg, err := loadConfig(cfgFile, nil)
	if err != nil {
		return err
	}
	logger := newLogger(config.Log{Level: "warn", Format: "text"}, stdio.Err)
	db, err := server.OpenStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	return f(db)
}
