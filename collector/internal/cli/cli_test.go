package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigErrorsExitWithLines(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yml")
	if err := os.WriteFile(path, []byte("version: 1\nlisten: \":80\"\nlog:\n  level: chatty\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runMain(t, "serve", "--config", path)
	if code != 2 || out != "" {
		t.Errorf("exit %d stdout %q", code, out)
	}
	for _, want := range []string{path + ":4: log.level", "database.url: required"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	// A bad --listen is validated like the file.
	t.Setenv("DATABASE_URL", "postgres://u@127.0.0.1:1/x")
	code, _, errs = runMain(t, "serve", "--listen", "nowhere")
	if code != 2 || !strings.Contains(errs, "listen: not a host:port") {
		t.Errorf("bad --listen: exit %d: %s", code, errs)
	}
}

func TestAPIKeyBadRole(t *testing.T) {
	code, out, errs := runMain(t, "apikey", "create", "--name", "x", "--role", "superuser")
	if code != 1 || out != "" || !strings.Contains(errs, "--role must be viewer, operator or admin") {
		t.Errorf("exit %d stdout %q stderr %q", code, out, errs)
	}
	code, _, errs = runMain(t, "apikey", "revoke", "three")
	if code != 1 || !strings.Contains(errs, "must be a number") {
		t.Errorf("revoke three: exit %d %s", code, errs)
	}
}

// TestEveryCommandHasAnExample keeps the house rule.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := NewRoot(IO{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	stack := root.Commands()
	for len(stack) > 0 {
		c := stack[0]
		stack = append(stack[1:], c.Commands()...)
		if c.Example == "" && c.Name() != "help" && c.Name() != "completion" && c.Parent().Name() != "completion" {
			t.Errorf("%s has no Example", c.CommandPath())
		}
	}
}
