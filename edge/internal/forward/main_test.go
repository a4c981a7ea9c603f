package forward

import (
	"os"
	"testing"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// TestMain encodes one batch before any test runs: shared/wire creates its
// zstd encoder (with goroutines and channels) on first use, and if that
// happened inside a synctest bubble, later use outside it would be fatal.
func TestMain(m *testing.M) {
	if _, err := wire.EncodeBatch(nil, &wire.Batch{EdgeID: "warm-up"}); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}
