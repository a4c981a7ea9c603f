// Package artifact is the model artifact format: a versioned,
// self-describing file holding a detector's kind, parameters, the sensors it
// applies to, its calibration, training window and metrics, protected by a
// SHA-256 digest and an Ed25519 signature. The byte layout is specified in
// FORMAT.md next to this file.
//
// Decode never trusts its input: it checks the header, the digest, that the
// signing key is one of the trusted keys passed in and the signature, and
// only then parses the payload strictly. It does not panic on any input.
package artifact

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Magic is the first line of every artifact; the trailing number is the
// format version.
const Magic = "smartmaint-model v1"

// MaxSize bounds an artifact, so a hostile file cannot exhaust memory.
const MaxSize = 16 << 20

// Errors returned by Decode, wrapped with detail.
var (
	// ErrFormat: the bytes are not a well-formed artifact.
	ErrFormat = errors.New("malformed model artifact")
	// ErrUnsigned: the artifact carries no signature.
	ErrUnsigned = errors.New("model artifact is not signed")
	// ErrTampered: the digest or the signature does not match the payload.
	ErrTampered = errors.New("model artifact digest or signature mismatch")
	// ErrUntrusted: the artifact is signed by a key that is not trusted.
	ErrUntrusted = errors.New("model artifact signed by an untrusted key")
)

// Model is the payload of an artifact.
type Model struct {
	// Name identifies the model ("pump-pca"); Version its version
	// ("2026-11-26.1"). Scores record "Name@Version".
	Name    string `json:"name"`
	Version string `json:"version"`
	// Kind is the detector kind (models.NamePCA, models.NameEnsemble, ...).
	Kind string `json:"kind"`
	// Sensors the model applies to, in column order for row models; or
	// SensorType to apply it to every sensor of a type.
	Sensors    []string `json:"sensors,omitempty"`
	SensorType string   `json:"sensor_type,omitempty"`
	// Threshold is the decision threshold on the score.
	Threshold float64 `json:"threshold"`
	// Params are the kind's parameters (JSON; the kind defines the shape).
	Params json.RawMessage `json:"params"`
	// Calibration says how the score is obtained from the statistic.
	Calibration Calibration `json:"calibration"`
	Training    Training    `json:"training"`
	CreatedAt   time.Time   `json:"created_at"`
}

// Ref returns "Name@Version".
func (m *Model) Ref() string { return m.Name + "@" + m.Version }

// Calibration describes the score mapping.
type Calibration struct {
	// Method is "tail-log10": score = -log10(p)/Decades, p from the
	// statistic's tail distribution (kept in Params).
	Method  string  `json:"method"`
	Decades float64 `json:"decades"`
}

// Training records what the model was fitted on and how it did.
type Training struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Rows int       `json:"rows"`
	// Source is where the data came from ("csv:pump7.csv", "db:site1/...").
	Source string `json:"source,omitempty"`
	// Metrics are evaluation figures (e.g. "train_alarm_rate").
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Validate checks the payload's fields (not the kind's parameters).
func (m *Model) Validate() error {
	var errs []error
	if m.Name == "" || strings.ContainsAny(m.Name, "@ \n") {
		errs = append(errs, fmt.Errorf("name %q: must be non-empty without '@' or spaces", m.Name))
	}
	if m.Version == "" || strings.ContainsAny(m.Version, "@ \n") {
		errs = append(errs, fmt.Errorf("version %q: must be non-empty without '@' or spaces", m.Version))
	}
	if m.Kind == "" {
		errs = append(errs, errors.New("kind: missing"))
	}
	if !(m.Threshold > 0 && m.Threshold <= 1) {
		errs = append(errs, fmt.Errorf("threshold %v: must be in (0,1]", m.Threshold))
	}
	if len(m.Params) == 0 {
		errs = append(errs, errors.New("params: missing"))
	}
	if m.Calibration.Method != "tail-log10" || !(m.Calibration.Decades > 0) {
		errs = append(errs, fmt.Errorf("calibration: unsupported method %q / decades %v", m.Calibration.Method, m.Calibration.Decades))
	}
	return errors.Join(errs...)
}

// KeyID names a public key in an artifact: the hex of the first 8 bytes of
// its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

func signedMessage(digest []byte) []byte {
	return append([]byte(Magic+"\n"), digest...)
}

// Encode serialises m and signs it with priv.
func Encode(m *Model, priv ed25519.PrivateKey) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode model artifact: %w", err)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("encode model artifact: no valid signing key")
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode model artifact: %w", err)
	}
	payload = append(payload, '\n')
	digest := sha256.Sum256(payload)
	sig := ed25519.Sign(priv, signedMessage(digest[:]))
	pub := priv.Public().(ed25519.PublicKey)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nsha256 %s\nkey %s\nsig %s\n\n", Magic, hex.EncodeToString(digest[:]), KeyID(pub), base64.StdEncoding.EncodeToString(sig))
	b.Write(payload)
	if b.Len() > MaxSize {
		return nil, fmt.Errorf("encode model artifact: %d bytes exceeds %d", b.Len(), MaxSize)
	}
	return b.Bytes(), nil
}

// Header is the verified header of an artifact.
type Header struct {
	Digest [32]byte
	KeyID  string
}

// Decode verifies data against the trusted keys and parses its payload.
func Decode(data []byte, trusted []ed25519.PublicKey) (*Model, Header, error) {
	var h Header
	if len(data) > MaxSize {
		return nil, h, fmt.Errorf("%w: %d bytes exceeds %d", ErrFormat, len(data), MaxSize)
	}
	lines := make([]string, 0, 4)
	rest := data
	for len(lines) < 5 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil, h, fmt.Errorf("%w: header line %d: missing newline", ErrFormat, len(lines)+1)
		}
		lines = append(lines, string(rest[:i]))
		rest = rest[i+1:]
		if len(lines) == 5 {
			break
		}
	}
	if lines[0] != Magic {
		return nil, h, fmt.Errorf("%w: line 1: want %q", ErrFormat, Magic)
	}
	field := func(n int, name string) (string, error) {
		v, ok := strings.CutPrefix(lines[n], name+" ")
		if !ok {
			return "", fmt.Errorf("line %d: want %q field", n+1, name)
		}
		return v, nil
	}
	dhex, err := field(1, "sha256")
	if err != nil {
		return nil, h, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if d, err := hex.DecodeString(dhex); err != nil || len(d) != 32 {
		return nil, h, fmt.Errorf("%w: line 2: sha256 is not 64 hex digits", ErrFormat)
	} else {
		copy(h.Digest[:], d)
	}
	kid, err := field(2, "key")
	if err != nil || kid == "" {
		return nil, h, fmt.Errorf("%w: line 3: no signing key", ErrUnsigned)
	}
	h.KeyID = kid
	sigb64, err := field(3, "sig")
	if err != nil || sigb64 == "" {
		return nil, h, fmt.Errorf("%w: line 4: no signature", ErrUnsigned)
	}
	sig, err := base64.StdEncoding.DecodeString(sigb64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, h, fmt.Errorf("%w: line 4: signature is not %d bytes of base64", ErrFormat, ed25519.SignatureSize)
	}
	if lines[4] != "" {
		return nil, h, fmt.Errorf("%w: line 5: want an empty line before the payload", ErrFormat)
	}
	got := sha256.Sum256(rest)
	if got != h.Digest {
		return nil, h, fmt.Errorf("%w: payload sha256 %x, header says %x", ErrTampered, got, h.Digest)
	}
	var key ed25519.PublicKey
	for _, k := range trusted {
		if len(k) == ed25519.PublicKeySize && KeyID(k) == kid {
			key = k
			break
		}
	}
	if key == nil {
		return nil, h, fmt.Errorf("%w: key %s", ErrUntrusted, kid)
	}
	if !ed25519.Verify(key, signedMessage(h.Digest[:]), sig) {
		return nil, h, fmt.Errorf("%w: bad signature by key %s", ErrTampered, kid)
	}
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	var m Model
	if err := dec.Decode(&m); err != nil {
		return nil, h, fmt.Errorf("%w: payload: %v", ErrFormat, err)
	}
	if dec.More() {
		return nil, h, fmt.Errorf("%w: payload: trailing data", ErrFormat)
	}
	if err := m.Validate(); err != nil {
		return nil, h, fmt.Errorf("%w: payload: %v", ErrFormat, err)
	}
	return &m, h, nil
}

// ParsePublicKey reads a public key file: the base64 (standard) encoding
// of the 32-byte Ed25519 key, optionally prefixed "ed25519:".
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	s := strings.TrimSpace(string(text))
	s = strings.TrimPrefix(s, "ed25519:")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key: want base64 of %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// FormatPublicKey is the inverse of ParsePublicKey.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(pub)
}
