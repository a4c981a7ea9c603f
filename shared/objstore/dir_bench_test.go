package objstore

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// BenchmarkDirGetNotModified is the cost of one edge poll of an unchanged
// 16 KiB manifest in a directory store (read + SHA-256 + compare).
func BenchmarkDirGetNotModified(b *testing.B) {
	ctx := context.Background()
	d := Dir{Root: b.TempDir()}
	if err := d.Put(ctx, "manifest.json", bytes.Repeat([]byte("x"), 16<<10), PutOptions{}); err != nil {
		b.Fatal(err)
	}
	o, err := d.Get(ctx, "manifest.json", "", 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Get(ctx, "manifest.json", o.ETag, 1<<20); !errors.Is(err, ErrNotModified) {
			b.Fatal(err)
		}
	}
}
