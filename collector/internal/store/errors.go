package store

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Temporary reports whether err is worth retrying later: the database is
// unreachable, overloaded, shutting down, or the statement lost a
// serialisation race, a deadlock or a timeout. Everything else — bad data
// (class 22), constraint violations (23), schema problems (42) — is
// permanent: retrying the same batch would fail the same way, so callers
// must not let it block the queue behind it.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if code := pgCode(err); code != "" {
		switch {
		case strings.HasPrefix(code, "08"), // connection exception
			strings.HasPrefix(code, "53"),                     // insufficient resources
			strings.HasPrefix(code, "58"),                     // system error (I/O)
			code == "40001",                                   // serialization_failure
			code == "40P01",                                   // deadlock_detected
			code == "55P03",                                   // lock_not_available
			code == "57014",                                   // query_canceled (statement_timeout)
			code == "57P01", code == "57P02", code == "57P03": // shutdown, cannot connect now
			return true
		}
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

// IsConflictRetry reports whether err is a deadlock or serialisation
// failure: the transaction lost a race and may be retried at once.
func IsConflictRetry(err error) bool {
	code := pgCode(err)
	return code == "40001" || code == "40P01"
}
