package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/collector/internal/store"
)

func newAPIKeyCmd(stdio IO) *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "apikey",
		Short: "Create, list and revoke API keys",
		Example: `  KEY=$(sm-collector apikey create --name grafana --role viewer)
  sm-collector apikey list
  sm-collector apikey revoke 3`,
	}
	cmd.PersistentFlags().StringVar(&cfgFile, "config", "", "config file (YAML); DATABASE_URL overrides its database.url")

	var name, role string
	create := &cobra.Command{
		Use:   "create --name NAME --role viewer|operator|admin",
		Short: "Create an API key and print it (shown only once)",
		Long: `create makes an API key with a role and prints the key alone on stdout.
viewer reads; operator also acts on alerts; admin also manages keys, edges
and models. The key is stored only as a hash.`,
		Example: `  sm-collector apikey create --name grafana --role viewer > grafana.key`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := store.Role(role)
			if !r.Valid() {
				return &ExitError{Code: 1, Err: fmt.Errorf("--role must be viewer, operator or admin, got %q", role)}
			}
			return withStore(cmd.Context(), stdio, cfgFile, func(db *store.DB) error {
				k, secret, err := db.CreateAPIKey(cmd.Context(), name, r)
				if err != nil {
					return exitIfUser(err)
				}
				fmt.Fprintf(stdio.Err, "created API key %d %q (%s); the key follows on stdout (shown only once)\n", k.ID, k.Name, k.Role)
				_, err = fmt.Fprintln(stdio.Out, secret)
				return err
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "who or what uses the key (required)")
	create.Flags().StringVar(&role, "role", "", "viewer, operator or admin (required)")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:     "list",
		Short:   "List API keys (never the keys themselves)",
		Example: `  sm-collector apikey list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), stdio, cfgFile, func(db *store.DB) error {
				keys, err := db.ListAPIKeys(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tREVOKED")
				for _, k := range keys {
					revoked := "-"
					if !k.RevokedAt.IsZero() {
						revoked = when(k.RevokedAt)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Role, when(k.CreatedAt), revoked)
				}
				return tw.Flush()
			})
		},
	}

	revoke := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an API key",
		Example: `  sm-collector apikey revoke 3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("API key id must be a number, got %q", args[0])}
			}
			return withStore(cmd.Context(), stdio, cfgFile, func(db *store.DB) error {
				if err := db.RevokeAPIKey(cmd.Context(), id); err != nil {
					return exitIfUser(err)
				}
				_, err := fmt.Fprintf(stdio.Err, "revoked API key %d\n", id)
				return err
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
