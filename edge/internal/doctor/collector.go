package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/edge/internal/forward"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// DoctorAlarm marks the status report the doctor posts, so the collector's
// operators can tell it from the agent's own reports.
const DoctorAlarm = "doctor"

// clockSample is the collector's time seen in one answer.
type clockSample struct {
	known  bool
	offset time.Duration // collector minus edge
	// uncertainty is half the round trip plus the server time's
	// resolution.
	uncertainty time.Duration
	source      string
}

// collectorChecks runs collector.dns, .tcp, .tls, .cert, .token and .auth.
func (r *runner) collectorChecks(ctx context.Context) []Result {
	cc := r.cfg.Collector
	u, err := url.Parse(cc.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return []Result{{Name: "collector.dns", Status: Fail, Detail: fmt.Sprintf("collector.url %q is not an http(s) URL", cc.URL),
			Hint: "set collector.url to the collector's base URL, e.g. https://collector.example.com"}}
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	var out []Result
	skipRest := func(why string) []Result {
		out = append(out, r.checkToken())
		return append(out, Result{Name: "collector.auth", Status: Skip, Detail: why})
	}

	// DNS
	dns := Result{Name: "collector.dns", Status: OK}
	if ip := net.ParseIP(host); ip != nil {
		dns.Detail = fmt.Sprintf("%s is an IP address (no lookup)", host)
	} else {
		lctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		addrs, err := net.DefaultResolver.LookupHost(lctx, host)
		cancel()
		if err != nil {
			dns.Status = Fail
			dns.Detail, dns.Hint = explainDial(err, "collector", "collector.url", net.JoinHostPort(host, port), r.opts.Timeout)
			out = append(out, dns)
			return skipRest("collector name not resolved")
		}
		dns.Detail = fmt.Sprintf("%s resolves to %s", host, strings.Join(addrs, ", "))
	}
	out = append(out, dns)

	// TCP
	conn, res := dialTCP(ctx, r.opts.Timeout, "collector", "collector.url", net.JoinHostPort(host, port))
	out = append(out, res)
	if conn == nil {
		return skipRest("collector not reachable")
	}
	client, err := forward.NewHTTPClient(cc)
	if err != nil {
		_ = conn.Close()
		out = append(out, Result{Name: "collector.tls", Status: Fail, Detail: err.Error(),
			Hint: "collector.tls files must be readable PEM files (ca_file; cert_file and key_file together)"})
		return skipRest("no usable TLS configuration")
	}
	// TLS, with exactly the agent's TLS settings.
	if u.Scheme == "https" {
		tc := client.Transport.(*http.Transport).TLSClientConfig
		st, res := handshake(ctx, r.opts.Timeout, conn, tc, "collector", "collector.tls", host)
		out = append(out, res)
		certs, errs := certsOf(cc.TLS.CAFile, cc.TLS.CertFile, st)
		cres := checkCerts("collector.cert", "collector", "collector.tls", certs, r.opts.Now())
		if len(errs) > 0 {
			cres.Status, cres.Detail = Fail, strings.Join(errs, "; ")
			cres.Hint = "collector.tls files must be readable PEM certificates"
		}
		if len(certs) > 0 || len(errs) > 0 {
			out = append(out, cres)
		}
		if st == nil {
			return skipRest("TLS handshake with the collector failed")
		}
	} else {
		_ = conn.Close()
	}
	r.collectorReachable = true
	tok := r.checkToken()
	out = append(out, tok)
	if tok.Status == Fail {
		return append(out, Result{Name: "collector.auth", Status: Skip, Detail: "no usable token"})
	}
	token, _ := forward.LoadToken(cc, r.opts.Getenv)
	return append(out, r.checkAuth(ctx, client, token))
}

// tokenPlace says where the token is expected, for hints.
func (r *runner) tokenPlace() string {
	if f := r.cfg.Collector.TokenFile; f != "" {
		return f + " (collector.token_file)"
	}
	return "the environment variable " + forward.TokenEnv + " (or set collector.token_file)"
}

// checkToken checks that the edge's token can be read; it never prints
// the token.
func (r *runner) checkToken() Result {
	res := Result{Name: "collector.token"}
	cc := r.cfg.Collector
	register := fmt.Sprintf("`sm-collector edge register --name %s > FILE` on the collector prints the token", r.cfg.EdgeID)
	if cc.TokenFile != "" {
		st, err := os.Stat(cc.TokenFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			res.Status, res.Detail = Fail, fmt.Sprintf("token file %s does not exist", cc.TokenFile)
			res.Hint = fmt.Sprintf("%s: copy it to %s (mode 0600, owned by the user running sm-edge)", register, cc.TokenFile)
			return res
		case err != nil:
			res.Status, res.Detail = Fail, fmt.Sprintf("cannot stat token file: %v", err)
			res.Hint = fmt.Sprintf("make %s readable by the user running sm-edge", cc.TokenFile)
			return res
		case st.IsDir():
			res.Status, res.Detail = Fail, fmt.Sprintf("token file %s is a directory", cc.TokenFile)
			res.Hint = "collector.token_file must name the file holding the token"
			return res
		}
	}
	token, err := forward.LoadToken(cc, r.opts.Getenv)
	if err != nil {
		res.Status, res.Detail = Fail, err.Error()
		switch {
		case errors.Is(err, fs.ErrPermission):
			res.Hint = fmt.Sprintf("the user running the doctor cannot read %s: run as the sm-edge user, or chown that user and chmod 0600", cc.TokenFile)
		case cc.TokenFile != "":
			res.Hint = fmt.Sprintf("%s: write it to %s", register, cc.TokenFile)
		default:
			res.Hint = fmt.Sprintf("%s: put it in a file and set collector.token_file (preferred), or export %s", register, forward.TokenEnv)
		}
		return res
	}
	res.Status = OK
	if cc.TokenFile != "" {
		res.Detail = fmt.Sprintf("token read from %s (%d characters, not shown)", cc.TokenFile, len(token))
		if st, err := os.Stat(cc.TokenFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			res.Status = Warn
			res.Detail += fmt.Sprintf("; the file's mode is %04o: others on this box can read it", st.Mode().Perm())
			res.Hint = fmt.Sprintf("chmod 600 %s", cc.TokenFile)
		}
	} else {
		res.Detail = fmt.Sprintf("token read from %s (%d characters, not shown)", forward.TokenEnv, len(token))
	}
	return res
}

// problemDetail extracts "detail" from an RFC 9457 problem answer, or the
// start of any other answer.
func problemDetail(body []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	s := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		s = p.Title
		if p.Detail != "" {
			s = p.Detail
		}
	}
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

// checkAuth proves the token: it posts a status report (alarm "doctor")
// to /api/v1/edges/{id}/status and explains the answer. Any answer also
// gives a clock sample.
func (r *runner) checkAuth(ctx context.Context, client *http.Client, token string) Result {
	res := Result{Name: "collector.auth"}
	cc := r.cfg.Collector
	now := r.opts.Now().UTC()
	broker := "disconnected"
	if r.brokerReachable {
		broker = "connected"
	}
	st := wire.Status{EdgeID: r.cfg.EdgeID, Version: r.opts.Version, StartedAt: now, SentAt: now, Broker: broker, Alarms: []string{DoctorAlarm}}
	body, err := json.Marshal(st)
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("encode status: %v", err)
		res.Hint = "this is a bug in sm-edge: report it with the output of `sm-edge version`"
		return res
	}
	statusURL := strings.TrimSuffix(cc.URL, "/") + "/api/v1/edges/" + url.PathEscape(r.cfg.EdgeID) + "/status"
	c := *client
	c.Timeout = r.opts.Timeout
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	rctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, statusURL, bytes.NewReader(body))
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("build request: %v", err)
		res.Hint = "check collector.url and edge_id in the config"
		return res
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sm-edge-doctor/"+r.opts.Version)
	sent := r.opts.Now()
	resp, err := c.Do(req)
	if err != nil {
		res.Status = Fail
		if isTimeout(err) {
			res.Detail = fmt.Sprintf("POST %s: no answer within %s", statusURL, r.opts.Timeout)
			res.Hint = "the collector accepts connections but does not answer: it may be overloaded or stuck, or a proxy holds the request; check the collector's /readyz and logs"
		} else {
			res.Detail = fmt.Sprintf("POST %s: %v", statusURL, err)
			res.Hint = "check collector.url and any proxy (HTTPS_PROXY/NO_PROXY) between the box and the collector"
		}
		return res
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	recv := r.opts.Now()
	r.clock = clockFromAnswer(resp, answer, sent, recv)
	code := resp.StatusCode
	what := fmt.Sprintf("POST %s: %d %s", statusURL, code, http.StatusText(code))
	if d := problemDetail(answer); d != "" && (code < 200 || code > 299) {
		what += ": " + d
	}
	reregister := fmt.Sprintf("re-register the edge with `sm-collector edge register --name %s` and write the token to %s", r.cfg.EdgeID, r.tokenPlace())
	switch {
	case code >= 200 && code <= 299:
		res.Status = OK
		res.Detail = fmt.Sprintf("the collector accepted the edge's token (status report with alarm %q: %d in %s)", DoctorAlarm, code, roundDur(recv.Sub(sent)))
	case code == http.StatusUnauthorized:
		res.Status = Fail
		res.Detail = "token rejected (" + what + ")"
		res.Hint = reregister + "; if the edge was registered on another collector, point collector.url at that one"
	case code == http.StatusForbidden:
		res.Status = Fail
		res.Detail = "token rejected for this edge (" + what + ")"
		res.Hint = fmt.Sprintf("the token belongs to another edge or is not an edge token (edge_id here is %q): %s", r.cfg.EdgeID, reregister)
	case code == http.StatusNotFound:
		res.Status = Fail
		res.Detail = what
		res.Hint = fmt.Sprintf("either edge %q is not registered (check `sm-collector edge list`; %s), or collector.url does not point at sm-collector's base URL", r.cfg.EdgeID, reregister)
	case code >= 300 && code <= 399:
		res.Status = Fail
		res.Detail = fmt.Sprintf("%s (redirect to %s)", what, resp.Header.Get("Location"))
		res.Hint = "set collector.url to the address the collector really serves (often https:// instead of http://)"
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnsupportedMediaType:
		res.Status = Fail
		res.Detail = "the collector refused the status report (" + what + ")"
		res.Hint = "the collector and this edge may speak different versions: compare `sm-edge version` with the collector's"
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		res.Status = Warn
		res.Detail = "the collector is busy and did not check the token (" + what + ")"
		res.Hint = "run the doctor again in a minute; the agent backs off and keeps its data queued meanwhile"
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if s, err := strconv.Atoi(ra); err == nil {
				res.Hint = fmt.Sprintf("the collector asks to retry after %d s: run the doctor again then; the agent backs off and keeps its data queued meanwhile", s)
			}
		}
	case code >= 500:
		res.Status = Fail
		res.Detail = "the collector failed (" + what + ")"
		res.Hint = "the collector has a problem (database down?): check its /readyz and logs; the agent keeps its data queued meanwhile"
	default:
		res.Status = Fail
		res.Detail = "unexpected answer (" + what + ")"
		res.Hint = "collector.url may point at something other than sm-collector: check it"
	}
	return res
}

// clockFromAnswer estimates the collector's clock offset from an answer:
// a JSON server_time when the body has one (sub-second), else the Date
// header (whole seconds: its midpoint is used and the half second added
// to the uncertainty).
func clockFromAnswer(resp *http.Response, body []byte, sent, recv time.Time) clockSample {
	rtt := recv.Sub(sent)
	mid := sent.Add(rtt / 2)
	var st struct {
		ServerTime time.Time `json:"server_time"`
	}
	if json.Unmarshal(body, &st) == nil && !st.ServerTime.IsZero() {
		return clockSample{known: true, offset: st.ServerTime.Sub(mid), uncertainty: rtt / 2, source: "server_time"}
	}
	if d := resp.Header.Get("Date"); d != "" {
		if t, err := http.ParseTime(d); err == nil {
			return clockSample{known: true, offset: t.Add(500 * time.Millisecond).Sub(mid), uncertainty: rtt/2 + 500*time.Millisecond, source: "Date header"}
		}
	}
	return clockSample{}
}

// checkClock judges the clock offset measured by checkAuth.
func (r *runner) checkClock() Result {
	res := Result{Name: "clock"}
	c := r.clock
	if !c.known {
		res.Status = Skip
		res.Detail = "no answer from the collector carried its time"
		if !r.collectorReachable {
			res.Detail = "collector not reachable"
		}
		return res
	}
	off := c.offset
	abs := off
	if abs < 0 {
		abs = -abs
	}
	dir := "ahead of"
	if off > 0 {
		dir = "behind"
	}
	res.Detail = fmt.Sprintf("this box's clock is %s %s the collector's (±%s, from its %s)",
		abs.Round(10*time.Millisecond), dir, c.uncertainty.Round(10*time.Millisecond), c.source)
	hint := "enable time sync: `timedatectl set-ntp true` (check with `timedatectl status`), or point chrony/ntpd at the plant's time server"
	switch {
	case abs > clockFail:
		res.Status = Fail
		res.Hint = hint + "; readings carry source timestamps, so a wrong gateway or box clock puts them at the wrong time"
	case abs > clockWarn:
		res.Status = Warn
		res.Hint = hint
	default:
		res.Status = OK
	}
	return res
}
