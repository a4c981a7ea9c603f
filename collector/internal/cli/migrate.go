package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/collector/internal/store"
)

func newMigrateCmd(stdio IO) *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the embedded database migrations",
		Long: `migrate brings the database schema up to this build's version. It is
idempotent: running it on an up-to-date database changes nothing.`,
		Example: `  DATABASE_URL=postgres://collector@db/smartmaint sm-collector migrate
  sm-collector migrate --config /etc/sm-collector/collector.yml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), stdio, cfgFile, func(db *store.DB) error {
				if err := db.Migrate(cmd.Context()); err != nil {
					return fmt.Errorf("cannot migrate: %w", err)
				}
				layout := "plain PostgreSQL, partitioned readings"
				if db.Timescale() {
					layout = "TimescaleDB hypertable"
				}
				_, err := fmt.Fprintf(stdio.Err, "database migrated (%s)\n", layout)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&cfgFile, "config", "", "config file (YAML); DATABASE_URL overrides its database.url")
	return cmd
}
