package modelreg

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
)

// privateKeyPrefix starts a signing key file; the public half uses the
// "ed25519:" form of models/artifact.
const privateKeyPrefix = "ed25519-seed:"

// FormatPrivateKey is the signing key file content: "ed25519-seed:" and
// the standard base64 of the 32-byte seed, then a newline.
func FormatPrivateKey(priv ed25519.PrivateKey) string {
	return privateKeyPrefix + base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"
}

// ParsePrivateKey reads a signing key file written by FormatPrivateKey.
// Errors never include the key material.
func ParsePrivateKey(text []byte) (ed25519.PrivateKey, error) {
	s, ok := strings.CutPrefix(strings.TrimSpace(string(text)), privateKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("signing key: want a line starting %q", privateKeyPrefix)
	}
	seed, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key: want base64 of a %d-byte Ed25519 seed", ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
