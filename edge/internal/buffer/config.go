package buffer

import (
	"errors"
	"fmt"
	"time"
)

// Config is the `buffer:` section of the edge configuration file.
type Config struct {
	// MaxBytes is the byte budget of the queue: the logical size of the
	// queued telemetry, events and gap records (keys plus values). When a
	// commit would exceed it, the oldest telemetry is shed (see the package
	// doc). The bbolt file itself is larger by its page overhead.
	MaxBytes int64 `yaml:"max_bytes"`
	// CommitInterval is how long the first pending Write waits for other
	// writers to join its transaction. With 0 (the default) a commit starts
	// as soon as the previous one ended, and every Write that arrives during
	// a commit joins the next one (natural group commit): the batch grows
	// with the load and with the disk's fsync time, so a slow SD card gets
	// big, few commits on its own. A positive value trades latency for
	// fewer fsyncs at low rates (flash wear); Write latency is then about
	// CommitInterval plus one commit.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// MaxCommitRecords commits at once when this many records are pending,
	// without waiting for CommitInterval.
	MaxCommitRecords int `yaml:"max_commit_records"`
	// MaxPendingBytes bounds the memory of encoded records waiting for a
	// commit; writers block (backpressure) beyond it.
	MaxPendingBytes int64 `yaml:"max_pending_bytes"`
	// DeadLetterMaxBytes bounds the dead-letter bucket that keeps batches the
	// collector refused as undecodable; the oldest are dropped beyond it.
	DeadLetterMaxBytes int64 `yaml:"dead_letter_max_bytes"`
	// LiveShare is the fraction of each forwarded batch reserved for the
	// newest readings while a backlog drains (live first), in (0,1].
	LiveShare float64 `yaml:"live_share"`
	// Check selects the integrity check on open. Every open reads each page
	// of the file once (a damaged page must be found where it can be
	// handled, see FORMAT.md); "full" adds bbolt's consistency check of the
	// page accounting, which reads the file again.
	Check string `yaml:"check"`
}

// Default returns the configuration used when the section is absent.
func Default() Config {
	return Config{
		MaxBytes: 1 << 30,
		// 0: QoS1 writers are a closed loop bounded by the broker's in-flight
		// window, so their throughput is window ÷ Write latency; any linger
		// costs throughput. Measured: 64 one-reading writers reach ~30k/s
		// with 0 and ~8k/s with 2 ms (buffer_bench_test.go).
		CommitInterval:     0,
		MaxCommitRecords:   20000,
		MaxPendingBytes:    64 << 20,
		DeadLetterMaxBytes: 64 << 20,
		LiveShare:          0.5,
		Check:              CheckQuick,
	}
}

// Integrity check modes for Config.Check.
const (
	CheckFull  = "full"
	CheckQuick = "quick"
)

// minMaxBytes is the smallest budget accepted: below it a single commit of
// a busy site would not fit and everything would be shed.
const minMaxBytes = 64 << 10

// Validate reports every problem of c at once; each problem names its
// field path under `buffer.`.
func (c Config) Validate() error {
	var errs []error
	p := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("buffer.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.MaxBytes < minMaxBytes {
		p("max_bytes", "must be at least %d, got %d", minMaxBytes, c.MaxBytes)
	}
	if c.CommitInterval < 0 || c.CommitInterval > time.Second {
		p("commit_interval", "must be between 0 and 1s, got %s", c.CommitInterval)
	}
	if c.MaxCommitRecords < 1 {
		p("max_commit_records", "must be at least 1, got %d", c.MaxCommitRecords)
	}
	if c.MaxPendingBytes < 1<<10 {
		p("max_pending_bytes", "must be at least 1024, got %d", c.MaxPendingBytes)
	}
	if c.DeadLetterMaxBytes < 0 {
		p("dead_letter_max_bytes", "must not be negative, got %d", c.DeadLetterMaxBytes)
	}
	if !(c.LiveShare > 0 && c.LiveShare <= 1) {
		p("live_share", "must be in (0,1], got %v", c.LiveShare)
	}
	if c.Check != CheckFull && c.Check != CheckQuick {
		p("check", "must be %q or %q, got %q", CheckFull, CheckQuick, c.Check)
	}
	return errors.Join(errs...)
}
