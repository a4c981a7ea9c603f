package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/collector/internal/store"
)

func newEdgeCmd(stdio IO) *cobra.Command {
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Register and list edges",
		Example: `  TOKEN=$(sm-collector edge register --name plant1-line2)
  sm-collector edge list`,
	}
	cmd.PersistentFlags().StringVar(&cfgFile, "config", "", "config file (YAML); DATABASE_URL overrides its database.url")

	var name string
	register := &cobra.Command{
		Use:   "register --name NAME",
		Short: "Register an edge and print its token (shown only once)",
		Long: `register creates an edge whose id is NAME and prints its bearer token alone
on stdout. The token is stored only as a hash: keep it, it cannot be shown
again.`,
		Example: `  sm-collector edge register --name plant1-line2 > /etc/sm-edge/token`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), stdio, cfgFile, func(db *store.DB) error {
				e, token, err := db.RegisterEdge(cmd.Context(), name)
				if err != nil {
					return exitIfUser(err)
				}
				fmt.Fprintf(stdio.Err, "registered edge %q; its token follows on stdout (shown only once)\n", e.ID)
				_, err = fmt.Fprintln(stdio.Out, token)
				return err
			})
		},
	}
	register.Flags().StringVar(&name, "name", "", "edge id: letters, digits, '.', '_', '-' (required)")
	_ = register.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:     "list",
		Short:   "List edges with when they were last seen",
		Example: `  sm-collector edge list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), stdio, cfgFile, func(db *store.DB) error {
				tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tVERSION\tLAST SEEN\tBACKLOG\tRUNWAY H\tSTATE")
				cursor := ""
				for {
					edges, next, err := db.ListEdges(cmd.Context(), store.Page{Cursor: cursor, Limit: store.MaxPageLimit})
					if err != nil {
						return err
					}
					for _, e := range edges {
						state := "active"
						if !e.RevokedAt.IsZero() {
							state = "revoked"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1f\t%s\n", e.ID, dash(e.Version), when(e.LastSeen),
							e.BacklogRecords, e.RunwayHours, state)
					}
					if next == "" {
						break
					}
					cursor = next
				}
				return tw.Flush()
			})
		},
	}

	revoke := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an edge's token",
		Example: `  sm-collector edge revoke plant1-line2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd.Context(), stdio, cfgFile, func(db *store.DB) error {
				if err := db.RevokeEdge(cmd.Context(), args[0]); err != nil {
					return exitIfUser(err)
				}
				_, err := fmt.Fprintf(stdio.Err, "revoked edge %q\n", args[0])
				return err
			})
		},
	}
	cmd.AddCommand(register, list, revoke)
	return cmd
}

// exitIfUser turns store errors that are the user's doing (bad name,
// duplicate, unknown id) into exit status 1; others stay failures (2).
func exitIfUser(err error) error {
	if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return &ExitError{Code: 1, Err: err}
	}
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
