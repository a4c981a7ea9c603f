package store

import (
	"context"
	"testing"
)

// TestRegisterSensorsKeepsExisting: new ids are registered to the edge,
// ids that exist keep their entry (number and owner), and every id comes
// back, in one call mixing both.
func TestRegisterSensorsKeepsExisting(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, Options{Timescale: TimescaleOff})
	for _, e := range []string{"edge-a", "edge-b"} {
		if _, _, err := db.RegisterEdge(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	first, err := db.RegisterSensors(ctx, "edge-a", []string{"p/l/a/x", "p/l/a/y"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.RegisterSensors(ctx, "edge-b", []string{"p/l/a/x", "p/l/b/z", "p/l/b/z"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d entries, want 2: %+v", len(got), got)
	}
	for _, tc := range []struct {
		id, owner string
		num       int32 // 0: any new number
	}{
		{"p/l/a/x", "edge-a", first["p/l/a/x"].Num},
		{"p/l/b/z", "edge-b", 0},
	} {
		m, ok := got[tc.id]
		switch {
		case !ok:
			t.Errorf("%s: missing", tc.id)
		case m.EdgeID != tc.owner:
			t.Errorf("%s: owner %q, want %q", tc.id, m.EdgeID, tc.owner)
		case tc.num != 0 && m.Num != tc.num:
			t.Errorf("%s: num %d, want the existing %d", tc.id, m.Num, tc.num)
		case m.Num == 0:
			t.Errorf("%s: no number", tc.id)
		}
	}
	if got["p/l/b/z"].Num == first["p/l/a/y"].Num || got["p/l/b/z"].Num == first["p/l/a/x"].Num {
		t.Errorf("new sensor reused a number: %+v %+v", got, first)
	}
}
