package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/collector/internal/notify"
)

func newNotifyCmd(stdio IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "notify",
		Short:   "Tools for notification channels",
		Example: "  sm-collector notify receive --listen 127.0.0.1:9099 --secret-env WEBHOOK_SECRET",
	}
	cmd.AddCommand(newNotifyReceiveCmd(stdio))
	return cmd
}

// newNotifyReceiveCmd is a webhook receiver for checking a webhook channel
// end to end: it verifies each message's HMAC signature and replay window
// exactly as a production receiver should, drops redeliveries by their
// idempotency key, and prints one JSON line per accepted message.
func newNotifyReceiveCmd(stdio IO) *cobra.Command {
	var listen, secretEnv, secretFile string
	cmd := &cobra.Command{
		Use:   "receive --listen ADDR (--secret-env NAME | --secret-file FILE)",
		Short: "Receive signed webhooks and print them (to check a webhook channel)",
		Long: `Runs an HTTP receiver for the collector's webhook channel. Each POST is
checked like a production receiver should: the X-Smartmaint-Signature HMAC
over timestamp and body, the replay window of the timestamp, and the
Idempotency-Key (redeliveries are answered 200 but printed only once).
Accepted messages are printed to stdout as JSON lines; problems go to stderr.`,
		Example: `  export WEBHOOK_SECRET=$(openssl rand -hex 16)
  sm-collector notify receive --listen 127.0.0.1:9099 --secret-env WEBHOOK_SECRET`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret, err := readSecret(secretEnv, secretFile)
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			fmt.Fprintf(stdio.Err, "receiving signed webhooks on http://%s/\n", l.Addr())
			return serveReceiver(cmd.Context(), l, secret, stdio.Out, stdio.Err)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9099", "address to listen on")
	cmd.Flags().StringVar(&secretEnv, "secret-env", "", "environment variable holding the channel's secret")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the channel's secret")
	return cmd
}

func readSecret(env, file string) ([]byte, error) {
	switch {
	case env != "" && file != "":
		return nil, errors.New("give --secret-env or --secret-file, not both")
	case env != "":
		v := os.Getenv(env)
		if v == "" {
			return nil, fmt.Errorf("environment variable %s is empty", env)
		}
		return []byte(v), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read secret: %w", err)
		}
		if len(b) > 0 && b[len(b)-1] == '\n' {
			b = b[:len(b)-1]
		}
		return b, nil
	}
	return nil, errors.New("a secret is required: --secret-env NAME or --secret-file FILE")
}

func serveReceiver(ctx context.Context, l net.Listener, secret []byte, out, errw io.Writer) error {
	var mu sync.Mutex
	seen := map[string]time.Time{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		now := time.Now()
		if err := notify.VerifySignature(secret, r.Header.Get("X-Smartmaint-Timestamp"), r.Header.Get("X-Smartmaint-Signature"), body, now, notify.DefaultReplayWindow); err != nil {
			fmt.Fprintf(errw, "refused webhook from %s: %v\n", r.RemoteAddr, err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		for k, t := range seen { // remember keys for the replay window only
			if now.Sub(t) > 2*notify.DefaultReplayWindow {
				delete(seen, k)
			}
		}
		_, dup := seen[key]
		seen[key] = now
		if !dup {
			var msg json.RawMessage = body
			line, _ := json.Marshal(struct {
				Received time.Time       `json:"received"`
				Key      string          `json:"idempotency_key"`
				Message  json.RawMessage `json:"message"`
			}{now.UTC(), key, msg})
			fmt.Fprintf(out, "%s\n", line)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-done:
		return err
	}
}
