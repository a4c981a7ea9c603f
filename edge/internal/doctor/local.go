package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/edge/internal/forward"
	"github.com/smartmaint/smartmaint/edge/internal/modelcache"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
)

// Disk thresholds: below minFree the queue cannot commit a busy site's
// batch; a runway under a day means a weekend uplink outage loses data.
const (
	minFree     = 64 << 20
	minRunwayHr = 24
)

// fetchAgentStatus reads the running agent's /status; an error means no
// agent answers there.
func (r *runner) fetchAgentStatus(ctx context.Context) (*admin.Status, error) {
	if !r.cfg.Admin.Enabled() {
		return nil, errors.New("admin endpoint disabled (admin.listen is off)")
	}
	body, code, err := r.adminGet(ctx, "/status")
	if err != nil {
		return nil, err
	}
	if code == http.StatusUnauthorized {
		return nil, r.adminAuthError()
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %d %s", code, http.StatusText(code))
	}
	var st admin.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("GET /status: not a status document: %w", err)
	}
	return &st, nil
}

func (r *runner) adminGet(ctx context.Context, path string) ([]byte, int, error) {
	rctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+r.adminAddr()+path, nil)
	if err != nil {
		return nil, 0, err
	}
	if r.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+r.adminToken)
	}
	resp, err := r.httpClient().Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return body, resp.StatusCode, err
}

// errAdminAuth marks an admin endpoint that refused the doctor's token.
var errAdminAuth = errors.New("admin endpoint refused the token")

// adminAuthError explains a 401 from the admin endpoint: which token file
// was used (or why it could not be read). It never contains the token.
func (r *runner) adminAuthError() error {
	path := r.cfg.Admin.TokenPath(r.cfg.DataDir)
	if r.adminTokenErr != nil {
		return fmt.Errorf("%w: GET /status answered 401 and the token could not be read (%v); run the doctor as the agent's user or root", errAdminAuth, r.adminTokenErr)
	}
	return fmt.Errorf("%w: GET /status answered 401 to the token in %s; the agent uses admin.token_file, or DATA_DIR/%s when none is set: check both name the same file (the agent generated it on first start)", errAdminAuth, path, admin.TokenFileName)
}

func (r *runner) queuePath() string { return filepath.Join(r.cfg.DataDir, buffer.FileName) }

// checkDisk reports free space under the data dir, whether it is
// writable, and the queue's runway.
func (r *runner) checkDisk() Result {
	res := Result{Name: "disk", Status: OK}
	dir := r.cfg.DataDir
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(probe, &sfs); err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("cannot read free space of %s: %v", probe, err)
		res.Hint = "data_dir must be on a mounted, readable file system"
		return res
	}
	free := int64(sfs.Bavail) * int64(sfs.Bsize)
	total := int64(sfs.Blocks) * int64(sfs.Bsize)
	var parts, hints []string
	worst := OK
	raise := func(s Status) {
		if s == Fail || (s == Warn && worst == OK) {
			worst = s
		}
	}
	parts = append(parts, fmt.Sprintf("%s free of %s on %s", byteSize(free), byteSize(total), probe))
	if probe != dir {
		parts = append(parts, fmt.Sprintf("data_dir %s does not exist yet (the agent creates it)", dir))
	} else if err := writable(dir); err != nil {
		raise(Fail)
		parts = append(parts, fmt.Sprintf("data_dir is not writable: %v", err))
		hints = append(hints, fmt.Sprintf("the user running sm-edge must own %s: chown -R that user %s", dir, dir))
	}
	var used int64
	if fi, err := os.Stat(r.queuePath()); err == nil {
		used = fi.Size()
	}
	budget := r.cfg.Buffer.MaxBytes
	if need := budget - used; need > free {
		raise(Warn)
		parts = append(parts, fmt.Sprintf("the buffer budget %s exceeds the free space (queue file %s)", byteSize(budget), byteSize(used)))
		hints = append(hints, fmt.Sprintf("during a long outage the disk fills before the budget: free space, or lower buffer.max_bytes to about %s", byteSize(max(used+free*8/10, 64<<10))))
	} else {
		parts = append(parts, fmt.Sprintf("buffer budget %s fits", byteSize(budget)))
	}
	if free < minFree {
		raise(Fail)
		parts = append(parts, "the disk is (almost) full")
		hints = append(hints, fmt.Sprintf("free space on %s: the queue sheds the oldest readings when it cannot write", probe))
	}
	if q := r.agentQueue(); q != nil {
		if q.BytesPerSecond > 0 {
			parts = append(parts, fmt.Sprintf("runway %.1f h at the current %s/s", q.RunwayHours, byteSize(int64(q.BytesPerSecond))))
			if q.RunwayHours < minRunwayHr {
				raise(Warn)
				hints = append(hints, "the queue can ride out less than a day of uplink outage: raise buffer.max_bytes and free disk space")
			}
		} else {
			parts = append(parts, "no readings arriving now, so no runway estimate")
		}
	} else {
		parts = append(parts, "runway unknown while the agent is stopped (it needs the ingest rate)")
	}
	res.Status = worst
	res.Detail = strings.Join(parts, "; ")
	res.Hint = strings.Join(hints, "; ")
	return res
}

func (r *runner) agentQueue() *buffer.Stats {
	if r.agent == nil {
		return nil
	}
	return r.agent.Queue
}

func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return err
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// checkBuffer inspects the queue file read-only when no agent holds it;
// when one does, it reports the agent's view of the queue instead.
func (r *runner) checkBuffer() Result {
	res := Result{Name: "buffer"}
	path := r.queuePath()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		res.Status = OK
		res.Detail = fmt.Sprintf("no queue yet at %s (the agent creates it on first start)", path)
		return res
	}
	st, err := buffer.Inspect(path)
	switch {
	case errors.Is(err, buffer.ErrLocked):
		return r.bufferFromAgent(path)
	case errors.Is(err, fs.ErrPermission):
		res.Status, res.Detail = Fail, err.Error()
		res.Hint = fmt.Sprintf("run the doctor as the user that runs sm-edge, or fix the owner of %s", path)
		return res
	case err != nil:
		res.Status, res.Detail = Fail, fmt.Sprintf("the queue file is damaged: %v", err)
		res.Hint = "start the agent: it moves a damaged queue file aside (kept for inspection), records the loss as a gap and starts a fresh queue; keep the moved file for support"
		return res
	}
	res.Status = OK
	res.Detail = fmt.Sprintf("bbolt file healthy (agent stopped): %d record(s), %s queued (budget %s), file %s, last sequence %d",
		st.Records, byteSize(st.Bytes), byteSize(r.cfg.Buffer.MaxBytes), byteSize(st.FileBytes), st.LastSeq)
	if st.Records > 0 {
		res.Detail += fmt.Sprintf(", oldest %s old", st.OldestAge.Round(time.Second))
	}
	if st.DeadLetters > 0 {
		res.Status = Warn
		res.Detail += fmt.Sprintf("; %d batch(es) (%s) the collector refused are kept in the dead-letter bucket", st.DeadLetters, byteSize(st.DeadLetterBytes))
		res.Hint = fmt.Sprintf("export them with `sm-edge buffer export --data-dir %s --out FILE` and send them to support", r.cfg.DataDir)
	}
	return res
}

// alarmHints says what to do about each forwarder alarm.
var alarmHints = map[string]string{
	forward.AlarmUnauthorized: "the collector rejects the edge's token: re-register with `sm-collector edge register` and replace the token",
	forward.AlarmRejected:     "the collector refused batches as undecodable: they are in the dead-letter bucket; compare edge and collector versions",
}

func (r *runner) bufferFromAgent(path string) Result {
	res := Result{Name: "buffer"}
	if r.agent == nil || r.agent.Queue == nil {
		res.Status = Warn
		res.Detail = fmt.Sprintf("%s is locked by a running agent, but its admin endpoint at %s does not report the queue (%v)", path, r.adminAddr(), r.agentErr)
		res.Hint = "check admin.listen in the config matches the running agent's, or stop the agent to inspect the file"
		return res
	}
	q := r.agent.Queue
	res.Status = OK
	res.Detail = fmt.Sprintf("in use by the running agent: %d record(s), %s of %s budget queued", q.Records, byteSize(q.Bytes), byteSize(q.MaxBytes))
	if q.Records > 0 {
		res.Detail += fmt.Sprintf(", oldest %s old", q.OldestAge.Round(time.Second))
	}
	var hints []string
	if len(q.Drops) > 0 {
		res.Status = Warn
		var ds []string
		for _, k := range slices.Sorted(maps.Keys(q.Drops)) {
			ds = append(ds, fmt.Sprintf("%s=%d", k, q.Drops[k]))
		}
		res.Detail += "; dropped since start: " + strings.Join(ds, " ")
		hints = append(hints, "readings were shed (each loss is a gap record): raise buffer.max_bytes or restore the uplink")
	}
	if q.DeadLetters > 0 {
		res.Status = Warn
		res.Detail += fmt.Sprintf("; %d dead-lettered batch(es)", q.DeadLetters)
	}
	if u := r.agent.Uplink; u != nil {
		if len(u.Alarms) > 0 {
			res.Status = Fail
			res.Detail += "; uplink alarms: " + strings.Join(u.Alarms, ", ")
			for _, a := range u.Alarms {
				if h, ok := alarmHints[a]; ok {
					hints = append(hints, h)
				}
			}
		}
		if !u.Up && u.LastError != "" {
			if res.Status == OK {
				res.Status = Warn
			}
			res.Detail += "; uplink down: " + u.LastError
		}
	}
	res.Hint = strings.Join(hints, "; ")
	return res
}

// checkModels verifies the cached artifacts exactly as `sm-edge models
// verify` does (modelcache.ReadStatus and VerifyCached with the trusted
// keys of the config).
func (r *runner) checkModels() Result {
	res := Result{Name: "models"}
	mc := r.cfg.Models
	if !mc.Enabled() {
		res.Status = Skip
		res.Detail = "no models section (models.bucket or models.dir) configured: the edge scores with its built-in detectors"
		return res
	}
	keys, err := mc.PublicKeys()
	if err != nil {
		res.Status, res.Detail = Fail, err.Error()
		res.Hint = "models.trusted_keys must hold the publisher's Ed25519 public key (`sm-collector models` prints it)"
		return res
	}
	st, err := modelcache.ReadStatus(mc.CacheDir)
	if err != nil {
		res.Status, res.Detail = Fail, err.Error()
		res.Hint = fmt.Sprintf("the cache state is unreadable: stop the agent, move %s aside and start it again (it downloads the models anew)", mc.CacheDir)
		return res
	}
	if len(st.Targets) == 0 {
		res.Status = OK
		res.Detail = fmt.Sprintf("cache %s is empty: the agent downloads models on its next poll and scores with built-in detectors until then", mc.CacheDir)
		return res
	}
	v := modelcache.ArtifactVerifier{Trusted: keys}
	var good, bad []string
	var hints []string
	for _, t := range st.Targets {
		for _, ref := range append([]mm.Ref{t.Active}, t.Fallbacks...) {
			what := t.Target.Key() + " " + ref.ID()
			if _, err := modelcache.VerifyCached(mc.CacheDir, ref, v); err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", what, err))
				switch {
				case errors.Is(err, modelcache.ErrHashMismatch), errors.Is(err, fs.ErrNotExist):
					hints = append(hints, "a cached file is missing or damaged (disk fault?): restart the agent, which moves it aside and downloads it again")
				case errors.Is(err, modelcache.ErrVerify):
					hints = append(hints, "a cached model does not verify with models.trusted_keys: check the keys are the publisher's current ones")
				default:
					hints = append(hints, fmt.Sprintf("the cache cannot be read as the user running the doctor: run it as the sm-edge user, or fix the owner of %s", mc.CacheDir))
				}
				continue
			}
			good = append(good, what)
		}
	}
	res.Detail = fmt.Sprintf("%d cached model(s) verified (SHA-256 and signature)", len(good))
	if len(bad) > 0 {
		res.Status = Fail
		res.Detail = fmt.Sprintf("%d of %d cached model(s) failed: %s", len(bad), len(bad)+len(good), strings.Join(bad, "; "))
		res.Hint = strings.Join(dedup(hints), "; ")
		return res
	}
	res.Status = OK
	if len(st.Quarantined) > 0 {
		res.Status = Warn
		res.Detail += fmt.Sprintf("; %d corrupt file(s) moved aside earlier: %s", len(st.Quarantined), strings.Join(st.Quarantined, ", "))
		res.Hint = fmt.Sprintf("the agent recovered from them; %s can be emptied once support has seen them", filepath.Join(mc.CacheDir, "quarantine"))
	}
	return res
}

// adminChecks asks a running agent's /healthz and /readyz.
func (r *runner) adminChecks(ctx context.Context) []Result {
	if !r.cfg.Admin.Enabled() {
		return []Result{{Name: "admin", Status: Skip, Detail: "admin endpoint disabled (admin.listen is off)"}}
	}
	if r.agent == nil && errors.Is(r.agentErr, errAdminAuth) {
		return []Result{{Name: "admin", Status: Fail, Detail: r.agentErr.Error(),
			Hint: fmt.Sprintf("run `sm-edge doctor` with the same config (and as the same user) as the agent; the token is in %s", r.cfg.Admin.TokenPath(r.cfg.DataDir))}}
	}
	if r.agent == nil {
		return []Result{{Name: "admin", Status: Skip, Detail: fmt.Sprintf("no agent answers at %s (not running, or admin.listen differs)", r.adminAddr())}}
	}
	var out []Result
	for _, ep := range []string{"/healthz", "/readyz"} {
		res := Result{Name: "admin" + strings.Replace(ep, "/", ".", 1)}
		body, code, err := r.adminGet(ctx, ep)
		answer := strings.TrimSpace(string(body))
		switch {
		case err != nil:
			res.Status, res.Detail = Fail, fmt.Sprintf("GET %s: %v", ep, err)
			res.Hint = "the agent answered /status but not this: restart it and look at its log"
		case code == http.StatusOK:
			res.Status, res.Detail = OK, fmt.Sprintf("%s answers %d %q (agent %s, up %s)", ep, code, answer, r.agent.Version, r.agent.Now.Sub(r.agent.StartedAt).Round(time.Second))
		default:
			res.Status, res.Detail = Fail, fmt.Sprintf("%s answers %d: %s", ep, code, answer)
			res.Hint = "the agent runs but is not ready: the reason is above; `sm-edge status` shows the broker and queue state"
		}
		out = append(out, res)
	}
	return out
}
