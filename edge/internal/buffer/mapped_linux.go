package buffer

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops this process's resident pages of the queue file's
// memory map (madvise MADV_DONTNEED). bbolt reads the file through a
// read-only shared mapping and writes with pwrite, so the pages stay in
// the kernel's page cache and are mapped back in on the next access; only
// the process's resident set shrinks. Open calls it after its start-up
// check, which reads every page of the file: without it a queue file grown
// by an outage stays resident (file-backed RSS) for as long as the agent
// runs, although it holds next to nothing once drained.
//
// It runs inside a read transaction, which holds bbolt's mmap lock, so the
// mapping cannot be replaced (remapped on growth) while it is advised.
func releaseMapped(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, db.Info().Data, uintptr(tx.Size()), syscall.MADV_DONTNEED)
		if errno != 0 {
			return errno
		}
		return nil
	})
}
