package modelcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
)

// TargetStatus is one target as recorded in the cache directory.
type TargetStatus struct {
	Target mm.Target
	// Active is the model the edge runs for the target.
	Active mm.Ref
	// Fallbacks are older verified versions kept on disk.
	Fallbacks []mm.Ref
	// Since is when Active was activated.
	Since time.Time
}

// Status is what a cache directory holds, read without changing it (for
// `sm-edge models list|verify` and the doctor command; safe while the
// agent runs, since state.json is replaced atomically).
type Status struct {
	// ETag of the manifest last applied ("" before the first poll).
	ETag    string
	Targets []TargetStatus
	// Rejected maps refused SHA-256s to the reason.
	Rejected map[string]string
	// Quarantined lists files moved aside as corrupt.
	Quarantined []string
}

// ReadStatus reads dir's state.json. A missing file is an empty status.
func ReadStatus(dir string) (Status, error) {
	var st Status
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read model cache state: %w", err)
	}
	var ds diskState
	if err := json.Unmarshal(data, &ds); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	if ds.Version != stateVersion {
		return st, fmt.Errorf("%s: state version %d, this program reads %d", filepath.Join(dir, stateFile), ds.Version, stateVersion)
	}
	st.ETag, st.Rejected = ds.ETag, ds.Rejected
	for _, ts := range ds.Targets {
		if ts == nil || len(ts.Good) == 0 {
			continue
		}
		st.Targets = append(st.Targets, TargetStatus{Target: ts.Target, Active: ts.Good[0], Fallbacks: ts.Good[1:], Since: ts.Since})
	}
	sort.Slice(st.Targets, func(i, j int) bool { return st.Targets[i].Target.Key() < st.Targets[j].Target.Key() })
	q, _ := os.ReadDir(filepath.Join(dir, "quarantine"))
	for _, e := range q {
		st.Quarantined = append(st.Quarantined, e.Name())
	}
	return st, nil
}

// VerifyCached checks a cached artifact of ref in dir (SHA-256, then v)
// without moving anything.
func VerifyCached(dir string, ref mm.Ref, v Verifier) (Model, error) {
	if !validSHA(ref.SHA256) {
		return Model{}, fmt.Errorf("%s: malformed sha256 %q in the cache state: %w", ref.ID(), ref.SHA256, ErrHashMismatch)
	}
	data, err := os.ReadFile(filepath.Join(dir, "artifacts", ref.SHA256))
	if err != nil {
		return Model{}, fmt.Errorf("%s: %w", ref.ID(), err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != ref.SHA256 {
		return Model{}, fmt.Errorf("%s: cached file has sha256 %s: %w", ref.ID(), got, ErrHashMismatch)
	}
	m, err := v.Verify(data)
	if err != nil {
		return Model{}, fmt.Errorf("%s: %w: %w", ref.ID(), ErrVerify, err)
	}
	return m, nil
}
