package wire

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden bodies in testdata/golden")

// TestGolden pins format version 1: bodies written by this version must
// decode forever, and the uncompressed payload layout must not change by
// accident. Regenerate with: go test ./shared/wire -run TestGolden -update
// (only for a deliberate, documented format change).
func TestGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file string
		b    *Batch
		comp byte
	}{
		{"v1-realistic-none.bin", realisticBatch(11, 20), compressionNone},
		{"v1-realistic-zstd.bin", realisticBatch(11, 20), compressionZstd},
		{"v1-edge-cases-none.bin", roundTripCase(t, "extreme integers"), compressionNone},
		{"v1-non-finite-none.bin", roundTripCase(t, "non-finite values bit-exact"), compressionNone},
	}
	for _, tc := range cases {
		path := filepath.Join("testdata", "golden", tc.file)
		body, err := encodeBatch(nil, tc.b, tc.comp)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		golden, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		var got Batch
		if err := DecodeBatch(golden, &got, 0); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !batchEqual(tc.b, &got) {
			t.Errorf("%s decodes differently (-want +got):\n%s", path, batchDiff(tc.b, &got))
		}
		// zstd output may differ between library versions; our own
		// uncompressed layout must not.
		if tc.comp == compressionNone && !bytes.Equal(body, golden) {
			t.Errorf("%s: the encoder's output changed; a format change needs FORMAT.md and, if incompatible, a new version", path)
		}
	}
}

func roundTripCase(t *testing.T, name string) *Batch {
	t.Helper()
	for _, tc := range roundTripCases() {
		if tc.name == name {
			return tc.b
		}
	}
	t.Fatalf("no round-trip case %q", name)
	return nil
}
