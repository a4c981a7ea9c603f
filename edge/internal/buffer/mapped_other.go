//go:build !linux

package buffer

import bolt "go.etcd.io/bbolt"

// releaseMapped is a no-op where madvise is not used (see the Linux
// version); the edge ships for Linux.
func releaseMapped(*bolt.DB) error { return nil }
