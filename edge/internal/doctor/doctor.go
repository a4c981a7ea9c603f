// Package doctor is the self-test behind `sm-edge doctor`: a field
// technician runs it after installing an edge box, and every check says
// what it found and, when something is wrong, exactly what to do.
//
// Run loads the config and then checks, in order: the broker (TCP, TLS
// handshake, certificate expiry, MQTT CONNECT with the configured
// credentials under a throw-away client id, a subscription to each
// pattern), the collector (DNS, TCP, TLS, the token file, and an
// authenticated status report), the clock offset to the collector, the
// disk under the data directory, the durable queue, the model cache and,
// when an agent runs, its admin endpoint. Each check is a small function
// returning a Result; a check whose prerequisite failed is skipped with
// the reason.
//
// The doctor never changes the agent's state: the MQTT session is a clean
// one under "<client id>-doctor" (so the agent's persistent session is
// never taken over), the queue is opened read-only and only when no agent
// holds it, and the model cache is only read. The one write is a status
// report to the collector (alarm "doctor"), which is how the credential is
// proven. The token and the broker password are never printed.
package doctor

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
	"github.com/smartmaint/smartmaint/edge/internal/config"
)

// Status is the outcome of one check.
type Status string

// Check outcomes. Only Fail makes the doctor exit with status 1.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is the outcome of one check: Detail says what was found, Hint
// what to do about it (empty when nothing needs doing).
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

// Report is the outcome of a doctor run.
type Report struct {
	Config  string   `json:"config"`
	Results []Result `json:"results"`
}

// Failed counts the failed checks.
func (r Report) Failed() int { return r.count(Fail) }

// Warnings counts the checks that warned.
func (r Report) Warnings() int { return r.count(Warn) }

func (r Report) count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Options configure a doctor run.
type Options struct {
	// ConfigFile is the sm-edge config file.
	ConfigFile string
	// Timeout bounds each network step (dial, handshake, request);
	// default 10s.
	Timeout time.Duration
	// Version is reported in the status the doctor posts.
	Version string
	// Getenv reads the environment (the token when collector.token_file
	// is empty); default os.Getenv.
	Getenv func(string) string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Certificate expiry thresholds: a month gives a technician time to get a
// new certificate issued before the link stops.
const certWarnBefore = 30 * 24 * time.Hour

// Clock offset thresholds. The collector's Date header has a resolution
// of one second, so offsets below 2 s are within measurement noise;
// beyond a minute readings land in the wrong aggregation buckets and
// alert timings are off.
const (
	clockWarn = 2 * time.Second
	clockFail = 60 * time.Second
)

// runner carries what earlier checks found to later ones.
type runner struct {
	opts Options
	cfg  *config.Config

	brokerReachable bool // TCP (and TLS) to the broker worked
	// collector answers
	collectorReachable bool
	clock              clockSample
	// agent is the running agent's status from its admin endpoint (nil
	// when none answers); agentErr says why not.
	agent    *admin.Status
	agentErr error
	// adminToken is the admin endpoint's bearer token ("" when it could
	// not be read: adminTokenErr).
	adminToken    string
	adminTokenErr error
}

// Run runs every check and returns the report. It fails only by its
// results: a broken config is a failed "config" check and the rest are
// skipped.
func Run(ctx context.Context, opts Options) Report {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rep := Report{Config: opts.ConfigFile}
	cfg, res := checkConfig(opts.ConfigFile)
	rep.Results = append(rep.Results, res)
	if cfg == nil {
		for _, name := range []string{"broker", "collector", "clock", "disk", "buffer", "models", "admin"} {
			rep.Results = append(rep.Results, Result{Name: name, Status: Skip, Detail: "config could not be read"})
		}
		return rep
	}
	r := &runner{opts: opts, cfg: cfg}
	if cfg.Admin.Enabled() {
		r.adminToken, r.adminTokenErr = admin.ReadToken(cfg.Admin.TokenPath(cfg.DataDir))
	}
	r.agent, r.agentErr = r.fetchAgentStatus(ctx)
	rep.Results = append(rep.Results, r.brokerChecks(ctx)...)
	rep.Results = append(rep.Results, r.collectorChecks(ctx)...)
	rep.Results = append(rep.Results,
		r.checkClock(),
		r.checkDisk(),
		r.checkBuffer(),
		r.checkModels(),
	)
	rep.Results = append(rep.Results, r.adminChecks(ctx)...)
	return rep
}

// checkConfig loads and validates the config file; problems are reported
// as FILE:LINE: field: message, like `sm-edge config validate`.
func checkConfig(file string) (*config.Config, Result) {
	res := Result{Name: "config"}
	cfg, profiles, probs := config.Load(file)
	if len(probs) == 0 {
		res.Status = OK
		res.Detail = fmt.Sprintf("%s: valid (edge %s, %d subscription(s), %d profiles available)", file, cfg.EdgeID, len(cfg.Subscriptions), len(profiles))
		return cfg, res
	}
	lines := make([]string, len(probs))
	for i, p := range probs {
		lines[i] = p.String()
	}
	res.Status = Fail
	res.Detail = fmt.Sprintf("%d problem(s):\n%s", len(probs), strings.Join(lines, "\n"))
	res.Hint = fmt.Sprintf("fix each line above (FILE:LINE: field: message), then run `sm-edge config validate --config %s` until it says ok", file)
	if cfg == nil {
		return nil, res
	}
	// The rest still runs on a config with problems: a technician fixing a
	// profile reference also wants to know whether the broker answers.
	// Checks whose own section is broken report that themselves.
	return cfg, res
}

// adminAddr is the address to reach the agent's admin endpoint at
// (a wildcard listen address is reached over loopback).
func (r *runner) adminAddr() string {
	host, port, err := splitHostPort(r.cfg.Admin.Listen)
	if err != nil {
		return r.cfg.Admin.Listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return joinHostPort(host, port)
}

func (r *runner) httpClient() *http.Client {
	return &http.Client{Timeout: r.opts.Timeout}
}
