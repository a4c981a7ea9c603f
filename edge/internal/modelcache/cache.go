// Package modelcache keeps the edge's anomaly models in step with the
// fleet manifest in S3 (collector/internal/modelreg/FORMAT.md).
//
// Cache.Run polls the manifest with a conditional GET (an unchanged
// manifest costs one 304), downloads changed artifacts, checks their
// SHA-256 against the manifest and their signature with a Verifier,
// writes them to the cache directory atomically, and publishes the set of
// active models. It keeps the last good version per target on disk, so
// the edge starts scoring with its models while S3 is unreachable and can
// fall back when a new model is refused or rolled back. A corrupt cache
// file is moved aside, reported and re-downloaded; the agent keeps running.
//
// # Hook for the detect stage
//
// The set of active models is published through an atomic pointer and a
// callback. Wiring in the agent (edge/internal/detect on the models branch):
//
//	cache, err := modelcache.FromConfig(cfg.Models, cfg.EdgeID, os.Getenv, reg, log,
//		func(set *modelcache.ActiveSet) {
//			var loaded []*models.Built
//			for _, a := range set.Entries {
//				loaded = append(loaded, a.Model.Built)
//			}
//			ms, err := detect.BuildSet(loaded) // built-ins for the rest
//			if err != nil { log.Error(...); return } // keep the previous set
//			stage.SetModels(ms)                     // atomic swap, no reading dropped
//			// start a Guard per newly activated ref (a.Since is recent)
//		})
//	go cache.Run(ctx)
//
// Lock-free lookup is also available: cache.Active().Resolve(sensorID,
// sensorType) returns the most specific target's model, and a.Ref.ID()
// ("name@version") is what every score records.
//
// Guard: every few seconds feed the new model's counts (from
// detect.ModelSet.Stats, as deltas) to guard.Observe(scored, flagged); on
// Rollback call cache.Reject(a.Target, a.Ref, guard.Reason()). Reject never
// waits for a download; the refusal persists across restarts and polls
// until the manifest names another artifact for the target.
package modelcache

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/objstore"
)

// Verifier checks an artifact's embedded SHA-256 and Ed25519 signature
// against the trusted keys and decodes it. It must be safe for concurrent
// use. ArtifactVerifier is the production implementation.
type Verifier interface {
	Verify(data []byte) (Model, error)
}

// Model is a verified, decoded artifact, ready for the detect stage.
type Model struct {
	// Payload is the artifact's content (kind, sensors, threshold,
	// training window and metrics).
	Payload *artifact.Model
	// Built constructs the detectors (models.FromArtifact).
	Built *models.Built
}

// ArtifactVerifier verifies with models/artifact.Decode against Trusted
// and builds the detectors with models.FromArtifact, so a model whose
// parameters the edge cannot run is refused before it is activated.
type ArtifactVerifier struct {
	Trusted []ed25519.PublicKey
}

// Verify implements Verifier.
func (v ArtifactVerifier) Verify(data []byte) (Model, error) {
	m, _, err := artifact.Decode(data, v.Trusted)
	if err != nil {
		return Model{}, err
	}
	b, err := models.FromArtifact(m)
	if err != nil {
		return Model{}, err
	}
	return Model{Payload: m, Built: b}, nil
}

// MaxArtifactSize bounds a download so a wrong manifest cannot fill the
// disk or memory of an edge box. Detector parameters are kilobytes; a
// large multivariate model is a few MiB.
const MaxArtifactSize = 64 << 20

// pollTimeout bounds one poll including downloads: at 1 Mbit/s a
// 64 MiB artifact takes about 9 minutes, so a poll never hangs past that.
const pollTimeout = 10 * time.Minute

// keepPerTarget is how many verified versions per target stay on disk:
// the active one and two to fall back to.
const keepPerTarget = 3

// Errors reported for refused artifacts.
var (
	// ErrHashMismatch: the downloaded or cached bytes do not match the
	// manifest's SHA-256 (tampered, truncated or corrupt).
	ErrHashMismatch = errors.New("artifact SHA-256 does not match the manifest")
	// ErrVerify: the Verifier refused the artifact (bad signature,
	// untrusted key, undecodable).
	ErrVerify = errors.New("artifact verification failed")
	// ErrNoManifest: the store holds no manifest yet (nothing published
	// or promoted); the edge keeps its cached or built-in models.
	ErrNoManifest = errors.New("no model manifest published yet")
)

// Active is one target's model in use.
type Active struct {
	Target mm.Target
	Ref    mm.Ref
	// Model is what the Verifier returned for the artifact.
	Model Model
	// Since is when this edge activated the ref.
	Since time.Time
}

// ActiveSet is an immutable snapshot of the models in use.
type ActiveSet struct {
	// Entries are sorted most specific first, then by target key, which
	// is the resolution order of FORMAT.md.
	Entries []Active
}

// Resolve returns the model for a sensor: the most specific matching
// target (the edge filter was applied when the set was built).
func (s *ActiveSet) Resolve(sensorID, sensorType string) (Active, bool) {
	for _, a := range s.Entries {
		t := a.Target
		t.Edge = "" // already filtered to this edge
		if t.Matches("", sensorID, sensorType) {
			return a, true
		}
	}
	return Active{}, false
}

func sortEntries(es []Active) {
	sort.Slice(es, func(i, j int) bool {
		si, sj := es[i].Target.Specificity(), es[j].Target.Specificity()
		if si != sj {
			return si > sj
		}
		return es[i].Target.Key() < es[j].Target.Key()
	})
}

// Options configures a Cache.
type Options struct {
	// EdgeID selects the manifest entries for this edge.
	EdgeID string
	// Dir is the cache directory (created if missing).
	Dir string
	// Store holds the manifest and artifacts (an S3 bucket or a local
	// directory, shared/objstore). Nil, with S3 nil too, means offline
	// (cache only).
	Store objstore.Store
	// Bucket and S3 are shorthand for Store = objstore.S3{Client: S3,
	// Bucket: Bucket}, used when Store is nil.
	Bucket string
	S3     objstore.S3API
	// Prefix is prepended to the manifest's key.
	Prefix string
	// PollInterval between manifest checks.
	PollInterval time.Duration
	// Verifier checks artifacts; required.
	Verifier Verifier
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// OnChange, if set, is called after every change of the active set,
	// in order, never concurrently with itself and never with a cache lock
	// held (it may call Reject). A slow callback delays later ones only.
	OnChange func(*ActiveSet)
}

// Cache is the edge model cache. Create with New, then call Run.
type Cache struct {
	o      Options
	log    *slog.Logger
	m      metrics
	active atomic.Pointer[ActiveSet]

	// pollMu serialises Load and Poll (network and downloads happen
	// under it); mu guards state and publishing and is never held during
	// network I/O, so Reject (called by the detect stage) never waits
	// for a download.
	pollMu sync.Mutex
	mu     sync.Mutex
	state  diskState
	// pending is the set published but not yet passed to OnChange
	// (guarded by mu); notifyMu is held while delivering.
	pending  *ActiveSet
	notifyMu sync.Mutex
}

// diskState is state.json in the cache directory.
type diskState struct {
	Version int `json:"version"`
	// ETag of the manifest last applied completely.
	ETag string `json:"etag,omitempty"`
	// Targets: per target key, the refs verified on disk, active first.
	Targets map[string]*targetState `json:"targets"`
	// Rejected holds SHA-256s this edge refused to run (guard rollback
	// or manual reject), so a restart does not adopt them again.
	Rejected map[string]string `json:"rejected,omitempty"`
}

type targetState struct {
	Target mm.Target `json:"target"`
	// Good are verified refs on disk, the active one first.
	Good []mm.Ref `json:"good"`
	// Since is when Good[0] was activated.
	Since time.Time `json:"since"`
}

const stateFile = "state.json"
const stateVersion = 1

// New prepares a cache; it does not touch the network.
func New(o Options) (*Cache, error) {
	if o.Verifier == nil {
		return nil, errors.New("modelcache: a Verifier is required")
	}
	if o.Dir == "" {
		return nil, errors.New("modelcache: cache directory is empty")
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Prefix != "" && o.Prefix[len(o.Prefix)-1] != '/' {
		o.Prefix += "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Store == nil && o.S3 != nil {
		o.Store = objstore.S3{Client: o.S3, Bucket: o.Bucket}
	}
	c := &Cache{o: o, log: o.Logger.With("component", "modelcache"), m: newMetrics(o.Registerer)}
	c.active.Store(&ActiveSet{})
	return c, nil
}

// Active returns the current set; never nil. Safe for concurrent use.
func (c *Cache) Active() *ActiveSet { return c.active.Load() }

// Run loads the cache from disk (publishing the last good models at
// once), then polls the manifest every PollInterval until ctx ends. Poll
// failures are logged and counted; they never stop Run.
func (c *Cache) Run(ctx context.Context) error {
	if err := c.Load(); err != nil {
		return err
	}
	if c.o.Store == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(c.o.PollInterval)
	defer t.Stop()
	noManifest := false // said so once; a fresh store is not a fault
	for {
		_, err := c.Poll(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
			noManifest = false
		case errors.Is(err, ErrNoManifest):
			if !noManifest {
				c.log.Info("no model manifest in the store yet; keeping the current models until one is published", "err", err)
			}
			noManifest = true
		default:
			noManifest = false
			c.log.Warn("model manifest poll failed; keeping the current models", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Load reads state.json and the artifacts it names, verifies each, moves
// corrupt files aside and publishes the resulting set. It is what lets
// the edge start scoring with S3 unreachable.
func (c *Cache) Load() error {
	defer c.notify() // after the unlocks below
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range []string{c.o.Dir, c.artifactDir(), c.quarantineDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("cannot create model cache directory %q: %w", d, err)
		}
	}
	c.state = diskState{Version: stateVersion, Targets: map[string]*targetState{}, Rejected: map[string]string{}}
	data, err := os.ReadFile(filepath.Join(c.o.Dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("cannot read model cache state: %w", err)
	default:
		var st diskState
		if err := json.Unmarshal(data, &st); err != nil || st.Version != stateVersion || st.Targets == nil {
			c.quarantine(filepath.Join(c.o.Dir, stateFile), fmt.Sprintf("unreadable state (version %d): %v", st.Version, err))
		} else {
			if st.Rejected == nil {
				st.Rejected = map[string]string{}
			}
			c.state = st
		}
	}
	set := &ActiveSet{}
	lost := false
	for key, ts := range c.state.Targets {
		if ts == nil || key != ts.Target.Key() {
			c.log.Error("model cache state has a malformed target; dropping it", "target", key)
			delete(c.state.Targets, key)
			lost = true
			continue
		}
		var good []mm.Ref
		var act *Active
		for _, ref := range ts.Good {
			if !validSHA(ref.SHA256) {
				// Never let a damaged state name a path outside the cache.
				c.log.Error("model cache state names a malformed artifact; ignoring it", "target", key, "model", ref.ID())
				continue
			}
			model, err := c.loadCached(ref)
			if err != nil {
				continue // reported and moved aside by loadCached
			}
			good = append(good, ref)
			if act == nil {
				act = &Active{Target: ts.Target, Ref: ref, Model: model, Since: ts.Since}
			}
		}
		gone := len(good) == 0 || len(ts.Good) == 0 || good[0].SHA256 != ts.Good[0].SHA256
		if gone {
			// The model the manifest named is gone from disk: fetch the
			// manifest fully next poll so it is downloaded again.
			lost = true
		}
		ts.Good = good
		if act == nil {
			delete(c.state.Targets, key)
			continue
		}
		if gone {
			act.Since = time.Now()
			ts.Since = act.Since
		}
		set.Entries = append(set.Entries, *act)
	}
	if lost {
		c.state.ETag = ""
	}
	c.publish(set)
	c.log.Info("model cache loaded", "dir", c.o.Dir, "models", len(set.Entries))
	return c.saveState()
}

// PollResult says what one poll did.
type PollResult string

// Poll results (also the values of the polls metric's result label).
const (
	NotModified PollResult = "not_modified"
	Changed     PollResult = "changed"
	Unchanged   PollResult = "unchanged" // new manifest, nothing new for this edge
	PollError   PollResult = "error"
)

// Poll checks the manifest once and applies it. Artifacts that fail
// their hash or signature are refused and counted; their targets keep
// their previous model. Load must have been called (Run does).
func (c *Cache) Poll(ctx context.Context) (PollResult, error) {
	defer c.notify() // after the unlock below
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	res, err := c.poll(ctx)
	c.m.polls.WithLabelValues(string(res)).Inc()
	return res, err
}

func (c *Cache) poll(ctx context.Context) (PollResult, error) {
	if c.o.Store == nil {
		return PollError, errors.New("no model store configured")
	}
	key := c.o.Prefix + mm.ManifestKey
	c.mu.Lock()
	etag := c.state.ETag
	c.mu.Unlock()
	out, err := c.o.Store.Get(ctx, key, etag, mm.MaxSize)
	if errors.Is(err, objstore.ErrNotModified) {
		return NotModified, nil
	}
	if errors.Is(err, objstore.ErrNotFound) {
		return PollError, fmt.Errorf("%w: %w", ErrNoManifest, err)
	}
	if err != nil {
		return PollError, fmt.Errorf("manifest: %w", err)
	}
	man, err := mm.Parse(out.Data)
	if err != nil {
		return PollError, fmt.Errorf("manifest %s: %w", c.o.Store.Location(key), err)
	}
	changed, transient := c.apply(ctx, man)
	c.mu.Lock()
	if transient == nil {
		c.state.ETag = out.ETag
	}
	err = c.saveState()
	c.mu.Unlock()
	if err != nil {
		return PollError, err
	}
	if transient != nil {
		return PollError, transient
	}
	if changed {
		return Changed, nil
	}
	return Unchanged, nil
}

// apply makes the cache follow the manifest's entries for this edge.
// Refused artifacts leave their target on its previous model. It returns
// whether the active set changed and the first transient (retryable)
// error, after which the manifest is fetched again next poll.
//
// It runs in three steps so that mu is not held while downloading: plan
// (under mu), fetch (no lock), commit (under mu, re-checking refusals that
// Reject recorded meanwhile).
func (c *Cache) apply(ctx context.Context, man *mm.Manifest) (bool, error) {
	type job struct {
		entry mm.Entry
		// candidates in order of preference: the active ref, or when it
		// is rejected here, the previous refs that are not.
		candidates []mm.Ref
		rejected   string // why the active ref is refused, if it is
		model      *Model
		ref        mm.Ref
		err        error
	}
	entries := man.ForEdge(c.o.EdgeID)

	// 1. Plan.
	c.mu.Lock()
	cur := map[string]Active{}
	for _, a := range c.Active().Entries {
		cur[a.Target.Key()] = a
	}
	jobs := make([]*job, 0, len(entries))
	for _, e := range entries {
		j := &job{entry: e}
		if old, had := cur[e.Target.Key()]; had && old.Ref.SHA256 == e.Active.SHA256 && old.Ref.ID() == e.Active.ID() {
			j.model, j.ref = &old.Model, old.Ref // unchanged
		} else if reason, bad := c.state.Rejected[e.Active.SHA256]; bad {
			j.rejected = reason
			for _, p := range e.Previous {
				if _, bad := c.state.Rejected[p.SHA256]; !bad {
					j.candidates = append(j.candidates, p)
				}
			}
		} else {
			j.candidates = []mm.Ref{e.Active}
		}
		jobs = append(jobs, j)
	}
	c.mu.Unlock()

	// 2. Fetch and verify, without the lock.
	var transient error
	for _, j := range jobs {
		for _, ref := range j.candidates {
			model, err := c.fetch(ctx, ref)
			if err == nil {
				j.model, j.ref = &model, ref
				break
			}
			if j.rejected == "" {
				j.err = err
				if !errors.Is(err, ErrHashMismatch) && !errors.Is(err, ErrVerify) && transient == nil {
					transient = err
				}
			}
		}
	}

	// 3. Commit.
	c.mu.Lock()
	defer c.mu.Unlock()
	cur = map[string]Active{}
	for _, a := range c.Active().Entries {
		cur[a.Target.Key()] = a
	}
	next := &ActiveSet{}
	seen := map[string]bool{}
	changed := false
	for _, j := range jobs {
		key := j.entry.Target.Key()
		seen[key] = true
		old, had := cur[key]
		if j.err != nil {
			c.log.Error("model refused; target keeps its previous model", "target", key, "model", j.entry.Active.ID(), "err", j.err)
		}
		_, nowRejected := c.state.Rejected[j.ref.SHA256]
		switch {
		case j.model == nil || nowRejected:
			if had {
				next.Entries = append(next.Entries, old)
			}
		case had && old.Ref.SHA256 == j.ref.SHA256 && old.Ref.ID() == j.ref.ID():
			next.Entries = append(next.Entries, old)
		default:
			next.Entries = append(next.Entries, Active{Target: j.entry.Target, Ref: j.ref, Model: *j.model, Since: time.Now()})
			changed = true
			c.remember(j.entry.Target, j.ref)
			if j.rejected != "" {
				c.log.Warn("manifest names a model rejected on this edge; running an earlier version", "target", key,
					"rejected", j.entry.Active.ID(), "running", j.ref.ID())
			} else {
				c.log.Info("model activated", "target", key, "model", j.ref.ID(), "sha256", j.ref.SHA256)
			}
		}
	}
	for key := range cur {
		if !seen[key] {
			changed = true
			delete(c.state.Targets, key)
			c.log.Info("model target removed from manifest; using built-in detectors", "target", key)
		}
	}
	if changed {
		c.publish(next)
		c.gc()
	}
	return changed, transient
}

// fetch returns the verified model for ref from the cache directory or,
// when absent or corrupt there, from the store.
func (c *Cache) fetch(ctx context.Context, ref mm.Ref) (Model, error) {
	path := c.artifactPath(ref.SHA256)
	if _, err := os.Stat(path); err == nil {
		if model, err := c.loadCached(ref); err == nil {
			return model, nil
		}
	}
	if ref.Size > MaxArtifactSize {
		c.m.verifyFailures.WithLabelValues("size").Inc()
		return Model{}, fmt.Errorf("artifact %s is %d bytes, over the %d limit: %w", ref.ID(), ref.Size, MaxArtifactSize, ErrVerify)
	}
	out, err := c.o.Store.Get(ctx, ref.Key, "", MaxArtifactSize)
	if err != nil {
		return Model{}, fmt.Errorf("download %s: %w", ref.ID(), err)
	}
	data := out.Data
	model, err := c.check(ref, data)
	if err != nil {
		return Model{}, err
	}
	if err := writeFileAtomic(c.artifactDir(), ref.SHA256, data); err != nil {
		return Model{}, fmt.Errorf("cache %s: %w", ref.ID(), err)
	}
	return model, nil
}

// check verifies bytes against the manifest hash and the Verifier.
func (c *Cache) check(ref mm.Ref, data []byte) (Model, error) {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != ref.SHA256 {
		c.m.verifyFailures.WithLabelValues("hash").Inc()
		return Model{}, fmt.Errorf("%s: got sha256 %s, manifest says %s: %w", ref.ID(), got, ref.SHA256, ErrHashMismatch)
	}
	model, err := c.o.Verifier.Verify(data)
	if err != nil {
		c.m.verifyFailures.WithLabelValues("signature").Inc()
		return Model{}, fmt.Errorf("%s: %w: %w", ref.ID(), ErrVerify, err)
	}
	if p := model.Payload; p == nil || p.Name != ref.Name || p.Version != ref.Version {
		c.m.verifyFailures.WithLabelValues("signature").Inc()
		got := "nothing"
		if p != nil {
			got = p.Ref()
		}
		return Model{}, fmt.Errorf("manifest names %s but the signed artifact is %s: %w", ref.ID(), got, ErrVerify)
	}
	return model, nil
}

// loadCached verifies a cached artifact; a bad one is moved aside.
func (c *Cache) loadCached(ref mm.Ref) (Model, error) {
	path := c.artifactPath(ref.SHA256)
	data, err := os.ReadFile(path)
	if err != nil {
		return Model{}, fmt.Errorf("read cached %s: %w", ref.ID(), err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != ref.SHA256 {
		c.m.verifyFailures.WithLabelValues("cache_corrupt").Inc()
		c.quarantine(path, fmt.Sprintf("cached %s does not match its SHA-256", ref.ID()))
		return Model{}, fmt.Errorf("cached %s: %w", ref.ID(), ErrHashMismatch)
	}
	model, err := c.o.Verifier.Verify(data)
	if err != nil {
		c.m.verifyFailures.WithLabelValues("cache_corrupt").Inc()
		c.quarantine(path, fmt.Sprintf("cached %s fails verification: %v", ref.ID(), err))
		return Model{}, fmt.Errorf("cached %s: %w: %w", ref.ID(), ErrVerify, err)
	}
	return model, nil
}

// quarantine moves a bad file to quarantine/ and reports it.
func (c *Cache) quarantine(path, reason string) {
	dst := filepath.Join(c.quarantineDir(), fmt.Sprintf("%s.%d", filepath.Base(path), time.Now().UnixNano()))
	if err := os.Rename(path, dst); err != nil {
		c.log.Error("corrupt model cache file could not be moved aside; removing it", "file", path, "reason", reason, "err", err)
		_ = os.Remove(path)
		return
	}
	c.m.quarantined.Inc()
	c.log.Error("corrupt model cache file moved aside", "file", path, "moved_to", dst, "reason", reason)
}

// remember records ref as the newest good version of target.
func (c *Cache) remember(t mm.Target, ref mm.Ref) {
	ts := c.state.Targets[t.Key()]
	if ts == nil {
		ts = &targetState{Target: t}
		c.state.Targets[t.Key()] = ts
	}
	good := []mm.Ref{ref}
	for _, g := range ts.Good {
		if g.SHA256 != ref.SHA256 && len(good) < keepPerTarget {
			good = append(good, g)
		}
	}
	ts.Good, ts.Since = good, time.Now()
}

// Reject stops running ref for target on this edge (the guard calls it
// on Rollback; reason is reported). The target falls back to its newest
// other good version on disk, or to the built-in detectors. The refusal
// survives restarts and later polls until the manifest names another
// artifact for the target.
func (c *Cache) Reject(t mm.Target, ref mm.Ref, reason string) {
	defer c.notify() // after the unlock below
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.Rejected[ref.SHA256] = fmt.Sprintf("%s rejected on edge: %s", ref.ID(), reason)
	c.m.rollbacks.Inc()
	next := &ActiveSet{}
	for _, a := range c.Active().Entries {
		if a.Target.Key() != t.Key() || a.Ref.SHA256 != ref.SHA256 {
			next.Entries = append(next.Entries, a)
			continue
		}
		ts := c.state.Targets[t.Key()]
		var fallback *Active
		if ts != nil {
			var good []mm.Ref
			for _, g := range ts.Good {
				if _, bad := c.state.Rejected[g.SHA256]; bad {
					continue
				}
				if fallback == nil {
					if model, err := c.loadCached(g); err == nil {
						fallback = &Active{Target: t, Ref: g, Model: model, Since: time.Now()}
					} else {
						continue
					}
				}
				good = append(good, g)
			}
			ts.Good, ts.Since = good, time.Now()
			if len(good) == 0 {
				delete(c.state.Targets, t.Key())
			}
		}
		if fallback != nil {
			next.Entries = append(next.Entries, *fallback)
			c.log.Error("model rolled back on this edge", "target", t.Key(), "model", ref.ID(), "now", fallback.Ref.ID(), "reason", reason)
		} else {
			c.log.Error("model rolled back on this edge; using built-in detectors", "target", t.Key(), "model", ref.ID(), "reason", reason)
		}
	}
	c.publish(next)
	if err := c.saveState(); err != nil {
		c.log.Error("cannot save model cache state after rollback", "err", err)
	}
}

// publish swaps in a new set and updates the active-version metric; the
// caller holds mu and calls notify after releasing it.
func (c *Cache) publish(s *ActiveSet) {
	sortEntries(s.Entries)
	c.active.Store(s)
	c.m.active.Reset()
	for _, a := range s.Entries {
		c.m.active.WithLabelValues(a.Target.Key(), a.Ref.Name, a.Ref.Version).Set(1)
	}
	c.pending = s
}

// notify hands published sets to OnChange outside the locks. If another
// goroutine is delivering, it picks ours up (it re-checks pending after
// unlocking), so no set is lost and none is delivered out of order.
func (c *Cache) notify() {
	if c.o.OnChange == nil {
		return
	}
	for {
		if !c.notifyMu.TryLock() {
			return
		}
		for {
			c.mu.Lock()
			p := c.pending
			c.pending = nil
			c.mu.Unlock()
			if p == nil {
				break
			}
			c.o.OnChange(p)
		}
		c.notifyMu.Unlock()
		c.mu.Lock()
		more := c.pending != nil
		c.mu.Unlock()
		if !more {
			return
		}
	}
}

// gc removes cached artifacts no target keeps.
func (c *Cache) gc() {
	keep := map[string]bool{}
	for _, ts := range c.state.Targets {
		for _, g := range ts.Good {
			keep[g.SHA256] = true
		}
	}
	entries, err := os.ReadDir(c.artifactDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			_ = os.Remove(filepath.Join(c.artifactDir(), e.Name()))
		}
	}
}

func (c *Cache) saveState() error {
	data, err := json.MarshalIndent(c.state, "", "  ")
	if err != nil {
		return fmt.Errorf("encode model cache state: %w", err)
	}
	if err := writeFileAtomic(c.o.Dir, stateFile, data); err != nil {
		return fmt.Errorf("save model cache state: %w", err)
	}
	return nil
}

func (c *Cache) artifactDir() string   { return filepath.Join(c.o.Dir, "artifacts") }
func (c *Cache) quarantineDir() string { return filepath.Join(c.o.Dir, "quarantine") }
func (c *Cache) artifactPath(sha string) string {
	return filepath.Join(c.artifactDir(), sha)
}

// validSHA reports whether s is 64 lower-case hex digits (so it is safe
// as a file name).
func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// writeFileAtomic writes dir/name so that a crash leaves either the old
// file or the complete new one: temp file, fsync, rename, fsync of dir.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}
