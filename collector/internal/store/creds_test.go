package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

func TestCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, Options{Timescale: TimescaleOff})

	edge, token, err := db.RegisterEdge(ctx, "plant1-edge")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, EdgeTokenPrefix) || len(token) != secretLen {
		t.Fatalf("token %q… has wrong shape", token[:6])
	}
	if _, _, err := db.RegisterEdge(ctx, "plant1-edge"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second RegisterEdge with the same name: %v, want ErrConflict", err)
	}
	if _, _, err := db.RegisterEdge(ctx, "bad name!"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("RegisterEdge(bad name): %v, want ErrInvalid", err)
	}
	p, err := db.Authenticate(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != PrincipalEdge || p.EdgeID != edge.ID || p.Role != RoleEdge {
		t.Fatalf("principal %+v", p)
	}

	key, secret, err := db.CreateAPIKey(ctx, "ops dashboard", RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, APIKeyPrefix) {
		t.Fatal("API key without prefix")
	}
	p, err = db.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != PrincipalAPIKey || p.ID != key.ID || p.Role != RoleViewer || p.Name != "ops dashboard" {
		t.Fatalf("principal %+v", p)
	}
	if _, _, err := db.CreateAPIKey(ctx, "x", Role("root")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateAPIKey(role root): %v", err)
	}

	// Neither secret is stored in clear anywhere.
	var n int
	err = db.pool.QueryRow(ctx, `SELECT count(*) FROM edges e, api_keys k
		WHERE e::text LIKE '%' || $1 || '%' OR k::text LIKE '%' || $2 || '%'`, token[4:], secret[4:]).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a secret is stored in clear")
	}

	flipped := token[:len(token)-1] + "A"
	if flipped == token {
		flipped = token[:len(token)-1] + "B"
	}
	for _, bad := range []string{"", "Bearer x", token[:len(token)-1], flipped, secret + "x", "smk_" + strings.Repeat("A", 43), "xyz_" + token[4:]} {
		if _, err := db.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q): %v, want ErrUnauthenticated", bad, err)
		}
	}

	keys, err := db.ListAPIKeys(ctx)
	if err != nil || len(keys) != 1 || !keys[0].RevokedAt.IsZero() {
		t.Fatalf("ListAPIKeys = %+v, %v", keys, err)
	}
	if err := db.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeAPIKey(ctx, key.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v, want ErrNotFound", err)
	}
	if _, err := db.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked key authenticates: %v", err)
	}
	keys, _ = db.ListAPIKeys(ctx)
	if keys[0].RevokedAt.IsZero() {
		t.Fatal("ListAPIKeys does not show the revocation")
	}
	if err := db.RevokeEdge(ctx, edge.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, token); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked edge authenticates: %v", err)
	}
}

func TestEdgesAndStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, Options{Timescale: TimescaleOff})
	var ids []string
	for _, name := range []string{"e3", "e1", "e2"} {
		e, _, err := db.RegisterEdge(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	st := wire.Status{EdgeID: "e2", Version: "1.2.3", Broker: "connected", BacklogRecords: 42, BacklogBytes: 4200,
		OldestAgeSeconds: 12.5, RunwayHours: 30, ClockOffsetMs: -4.5, Drops: map[string]uint64{"buffer_budget": 3}}
	recv := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	if err := db.SaveStatus(ctx, "e2", st, recv); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveStatus(ctx, "nope", st, recv); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SaveStatus(unknown edge): %v", err)
	}
	e, err := db.GetEdge(ctx, "e2")
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != "1.2.3" || e.BacklogRecords != 42 || e.RunwayHours != 30 || e.ClockOffsetMs != -4.5 ||
		!e.LastSeen.Equal(recv) || e.Status == nil || e.Status.Drops["buffer_budget"] != 3 {
		t.Fatalf("edge after status: %+v", e)
	}
	if _, err := db.GetEdge(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetEdge(unknown): %v", err)
	}
	var got []string
	cur := ""
	for {
		page, next, err := db.ListEdges(ctx, Page{Cursor: cur, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.ID)
		}
		if next == "" {
			break
		}
		cur = next
	}
	if strings.Join(got, ",") != "e1,e2,e3" {
		t.Fatalf("paged edges %v", got)
	}
	_ = ids
}
