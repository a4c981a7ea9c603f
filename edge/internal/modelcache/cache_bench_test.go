package modelcache

import (
	"context"
	"fmt"
	"testing"

	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
)

// BenchmarkResolve is the detect stage's per-sensor lookup (done when a
// sensor is first seen and after each swap) over a set of 50 targets.
func BenchmarkResolve(b *testing.B) {
	set := &ActiveSet{}
	for i := 0; i < 25; i++ {
		set.Entries = append(set.Entries,
			Active{Target: mm.Target{Sensor: fmt.Sprintf("site1/line%d/*/vib", i)}, Ref: mm.Ref{Name: "a", Version: "1"}},
			Active{Target: mm.Target{SensorType: fmt.Sprintf("type%d", i)}, Ref: mm.Ref{Name: "b", Version: "1"}})
	}
	sortEntries(set.Entries)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := set.Resolve("site1/line24/pump7/vib", "type24"); !ok {
			b.Fatal("no match")
		}
	}
}

// BenchmarkPollNotModified is one steady-state poll against the real
// S3 server: a conditional GET answered 304.
func BenchmarkPollNotModified(b *testing.B) {
	f := newFixture(b)
	ref := f.publish("m", nil)
	f.promote(mm.Target{}, ref)
	c := f.cache(f.s3)
	if res, err := c.Poll(context.Background()); res != Changed {
		b.Fatalf("first poll %s %v", res, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := c.Poll(context.Background()); res != NotModified {
			b.Fatalf("poll %s %v", res, err)
		}
	}
}
