// Package objstore is the small object-store interface the model
// registry (collector) and the model cache (edge) share, with two
// implementations: an S3 bucket (aws-sdk-go-v2) and a local directory.
//
// Both give the same layout and semantics: keys are slash-separated
// paths, every object has an ETag, Get honours If-None-Match (an
// unchanged object costs no transfer and returns ErrNotModified), and Put
// replaces an object atomically, optionally only if its ETag still
// matches (compare-and-swap) or only if it does not exist yet.
package objstore

import (
	"context"
	"errors"
)

// Errors callers test with errors.Is.
var (
	// ErrNotModified: Get's ifNoneMatch equals the object's ETag.
	ErrNotModified = errors.New("object not modified")
	// ErrNotFound: no object under the key.
	ErrNotFound = errors.New("object not found")
	// ErrPrecondition: a conditional Put found another ETag (or an
	// existing object for IfNoneMatch "*").
	ErrPrecondition = errors.New("object changed since it was read")
)

// Object is what Get returns.
type Object struct {
	Data []byte
	// ETag identifies this content; pass it to Get's ifNoneMatch or
	// PutOptions.IfMatch. It is opaque (quoted, as in HTTP).
	ETag string
}

// PutOptions are the optional parts of a Put.
type PutOptions struct {
	// ContentType and CacheControl are object metadata (S3 only; a
	// directory has no metadata and ignores them).
	ContentType  string
	CacheControl string
	// IfMatch writes only if the current object has this ETag.
	IfMatch string
	// IfNoneMatch "*" writes only if no object exists under the key.
	IfNoneMatch string
}

// Store is an object store. Implementations are safe for concurrent use.
type Store interface {
	// Get reads the object at key, at most limit bytes (a larger object
	// is an error). With ifNoneMatch equal to the object's current ETag
	// it returns ErrNotModified without the data.
	Get(ctx context.Context, key, ifNoneMatch string, limit int64) (Object, error)
	// Exists reports whether an object is stored under key.
	Exists(ctx context.Context, key string) (bool, error)
	// Put stores data under key atomically: a reader sees the old object
	// or the complete new one.
	Put(ctx context.Context, key string, data []byte, o PutOptions) error
	// Location names key for messages ("s3://bucket/key", "/dir/key").
	Location(key string) string
}
