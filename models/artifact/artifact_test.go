package artifact

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testKey(seed byte) ed25519.PrivateKey {
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	return ed25519.NewKeyFromSeed(s)
}

func sample() *Model {
	return &Model{
		Name: "pump7-pca", Version: "2026-11-26.1", Kind: "pca",
		Sensors:     []string{"site1/pump7/vib", "site1/pump7/temp"},
		Threshold:   0.45,
		Params:      json.RawMessage(`{"mean":[1,2]}`),
		Calibration: Calibration{Method: "tail-log10", Decades: 10},
		Training: Training{From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC),
			Rows: 10080, Source: "csv:x.csv", Metrics: map[string]float64{"train_alarm_rate": 0.001}},
		CreatedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
	}
}

func TestRoundTrip(t *testing.T) {
	k := testKey(1)
	data, err := Encode(sample(), k)
	if err != nil {
		t.Fatal(err)
	}
	m, h, err := Decode(data, []ed25519.PublicKey{testKey(2).Public().(ed25519.PublicKey), k.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if h.KeyID != KeyID(k.Public().(ed25519.PublicKey)) {
		t.Errorf("key id %s", h.KeyID)
	}
	if diff := cmp.Diff(sample(), m); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if m.Ref() != "pump7-pca@2026-11-26.1" {
		t.Errorf("ref %q", m.Ref())
	}
}

func TestRejects(t *testing.T) {
	k := testKey(1)
	trusted := []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
	good, err := Encode(sample(), k)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := Encode(sample(), testKey(3))
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	payloadAt := bytes.Index(good, []byte("\n\n")) + 2
	unsigned := bytes.Replace(bytes.Clone(good), good[bytes.Index(good, []byte("sig ")):bytes.Index(good, []byte("\n\n"))], []byte("sig "), 1)
	// Re-sign a payload with an unknown field: hash and signature fine,
	// payload strictness must refuse it.
	tests := []struct {
		name string
		data []byte
		keys []ed25519.PublicKey
		want error
	}{
		{"payload byte flipped", flip(len(good) - 5), trusted, ErrTampered},
		{"payload start flipped", flip(payloadAt + 3), trusted, ErrTampered},
		{"digest changed", flip(len(Magic) + 10), trusted, ErrTampered},
		{"untrusted signer", other, trusted, ErrUntrusted},
		{"no trusted keys", good, nil, ErrUntrusted},
		{"unsigned", unsigned, trusted, ErrUnsigned},
		{"empty", nil, trusted, ErrFormat},
		{"wrong magic", append([]byte("smartmaint-model v2"), good[len(Magic):]...), trusted, ErrFormat},
		{"truncated header", good[:30], trusted, ErrFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Decode(tc.data, tc.keys)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignatureFromOtherKeyWithSameID(t *testing.T) {
	// A forged signature line (random bytes) with the right key id fails.
	k := testKey(1)
	good, _ := Encode(sample(), k)
	i := bytes.Index(good, []byte("sig ")) + 4
	b := bytes.Clone(good)
	b[i] = 'A' + (b[i]-'A'+1)%26
	if b[i] == good[i] {
		t.Fatal("no change")
	}
	_, _, err := Decode(b, []ed25519.PublicKey{k.Public().(ed25519.PublicKey)})
	if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v", err)
	}
}

func TestEncodeValidates(t *testing.T) {
	m := sample()
	m.Threshold = 2
	m.Name = "a@b"
	if _, err := Encode(m, testKey(1)); err == nil {
		t.Fatal("want error")
	}
}

func TestPublicKeyText(t *testing.T) {
	pub := testKey(5).Public().(ed25519.PublicKey)
	got, err := ParsePublicKey([]byte(FormatPublicKey(pub) + "\n"))
	if err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := ParsePublicKey([]byte("ed25519:AAAA")); err == nil {
		t.Fatal("short key accepted")
	}
}

func FuzzDecode(f *testing.F) {
	k := testKey(1)
	trusted := []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
	good, _ := Encode(sample(), k)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte(Magic + "\nsha256 00\nkey \nsig \n\n{}"))
	f.Add([]byte{})
	rng := rand.New(rand.NewPCG(1, 2))
	b := bytes.Clone(good)
	b[rng.IntN(len(b))] ^= 0xff
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := Decode(data, trusted)
		if err == nil {
			if m == nil || m.Validate() != nil {
				t.Fatal("accepted an invalid model")
			}
			// Anything accepted must be byte-identical in its payload to
			// something the trusted key signed: re-encoding is stable.
			if _, err := Encode(m, k); err != nil {
				t.Fatal(err)
			}
		}
	})
}
