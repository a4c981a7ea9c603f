package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestTemporary(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("write: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{pg("08006"), true},  // connection failure
		{pg("53300"), true},  // too many connections
		{pg("40001"), true},  // serialization failure
		{pg("40P01"), true},  // deadlock
		{pg("57014"), true},  // statement timeout
		{pg("57P01"), true},  // admin shutdown
		{pg("23505"), false}, // unique violation
		{pg("23514"), false}, // check violation
		{pg("22P05"), false}, // untranslatable character
		{pg("42P01"), false}, // undefined table
		{context.DeadlineExceeded, true},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{errors.New("something else"), false},
		{ErrNotFound, false},
	} {
		if got := Temporary(tc.err); got != tc.want {
			t.Errorf("Temporary(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !IsConflictRetry(pg("40P01")) || IsConflictRetry(pg("08006")) {
		t.Error("IsConflictRetry misclassifies")
	}
}

func TestTemporaryOnUnreachableServer(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", Options{Logger: testLogger(t)})
	if err == nil {
		t.Fatal("Open on a closed port succeeded")
	}
	if !Temporary(err) {
		t.Fatalf("Temporary(%v) = false for an unreachable server", err)
	}
}
