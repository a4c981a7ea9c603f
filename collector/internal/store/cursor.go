package store

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Cursor kinds: what the keyset position of a listing is.
const (
	cursorString byte = 's' // a text key (sensor id, edge id)
	cursorInt    byte = 'i' // a bigint key (row id)
	cursorTime   byte = 't' // a time in Unix ns (readings, buckets)
)

// maxCursorLen bounds an encoded cursor; a sensor id is at most 256 bytes.
const maxCursorLen = 512

// cursor is a decoded keyset position. Cursors are opaque to clients:
// base64url of a kind byte and the key. The zero cursor means "start".
type cursor struct {
	kind byte
	s    string
	i    int64
}

func encodeCursor(c cursor) string {
	var b []byte
	switch c.kind {
	case cursorString:
		b = append([]byte{c.kind}, c.s...)
	default:
		b = binary.BigEndian.AppendUint64([]byte{c.kind}, uint64(c.i))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses s, which must be "" or a cursor of the given kind.
func decodeCursor(s string, kind byte) (cursor, error) {
	if s == "" {
		switch kind {
		case cursorInt:
			return cursor{kind: kind, i: 0}, nil
		case cursorTime:
			return cursor{kind: kind, i: -1 << 63}, nil
		}
		return cursor{kind: kind}, nil
	}
	if len(s) > maxCursorLen {
		return cursor{}, fmt.Errorf("%w: cursor too long", ErrInvalid)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != kind {
		return cursor{}, fmt.Errorf("%w: malformed cursor (use the next cursor of the previous page)", ErrInvalid)
	}
	c := cursor{kind: kind}
	switch kind {
	case cursorString:
		c.s = string(b[1:])
		if !utf8.ValidString(c.s) {
			return cursor{}, fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
	default:
		if len(b) != 9 {
			return cursor{}, fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		c.i = int64(binary.BigEndian.Uint64(b[1:]))
	}
	return c, nil
}

// trimPage cuts a listing fetched with LIMIT limit+1 to limit items and
// returns the cursor of the next page: "" when the extra row is absent, else
// the position of the last item kept.
func trimPage[T any](items []T, limit int, pos func(T) cursor) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, encodeCursor(pos(items[limit-1]))
}
