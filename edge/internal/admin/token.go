package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFileName is the generated token's file in the data directory.
const TokenFileName = "admin.token"

// TokenPath returns the file holding the admin token: admin.token_file,
// or DATA_DIR/admin.token when that is not set.
func (c Config) TokenPath(dataDir string) string {
	if c.TokenFile != "" {
		return c.TokenFile
	}
	return filepath.Join(dataDir, TokenFileName)
}

// ReadToken reads the token in path (one line). Errors name the file,
// never the token.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("read admin token: file %q is empty", path)
	}
	return t, nil
}

// LoadToken returns the token the agent requires: the one in
// admin.token_file when set (it must exist), else the one in
// DATA_DIR/admin.token, generated (32 random bytes, hex) and written
// atomically with mode 0600 when the file does not exist yet.
func LoadToken(c Config, dataDir string) (string, error) {
	path := c.TokenPath(dataDir)
	t, err := ReadToken(path)
	if c.TokenFile != "" || !errors.Is(err, fs.ErrNotExist) {
		return t, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	t = hex.EncodeToString(b[:])
	if err := writeFileAtomic(path, []byte(t+"\n")); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	return t, nil
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory (mode 0600), synced and renamed, then syncs the
// directory, so a crash leaves either no file or the whole one.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
