package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// readyTimeout bounds the readiness probe so a hung database makes /readyz
// fail fast instead of hanging the prober.
const readyTimeout = 2 * time.Second

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request, _ Principal) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request, _ Principal) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := h.opts.Ready.Ready(ctx); err != nil {
		h.log.Warn("not ready", "err", err)
		// The probe is public: the cause (which may name hosts) goes to the
		// log only.
		writeProblem(w, r, Problem{Type: ProblemUnavailable, Status: 503,
			Detail: "not ready: database unreachable or not migrated"}, h.opts.OverloadRetryAfter)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (h *Handler) serveMetrics(w http.ResponseWriter, r *http.Request, _ Principal) {
	h.opts.Metrics.ServeHTTP(w, r)
}

// ingest handles POST /api/v1/ingest. The edge id comes from the
// credential; a batch naming another edge is refused. A body that does not
// decode is answered with 400 and ProblemUndecodable, which tells the edge
// to dead-letter the batch instead of retrying it.
func (h *Handler) ingest(w http.ResponseWriter, r *http.Request, p Principal) {
	if q := parseQuery(r.URL.RawQuery).problem(); q != nil {
		writeProblem(w, r, *q, 0)
		return
	}
	buf := h.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer h.putBuf(buf)
	if !h.readBody(w, r, buf, h.opts.Limits.IngestBody) {
		return
	}
	b := h.batches.Get().(*wire.Batch)
	b.Reset()
	defer h.batches.Put(b)
	if err := h.opts.Decode(buf.Bytes(), b, h.opts.Limits.IngestDecoded); err != nil {
		writeProblem(w, r, Problem{Type: ProblemUndecodable, Status: 400, Title: "Undecodable batch",
			Detail: err.Error()}, 0)
		return
	}
	if b.EdgeID != p.EdgeID {
		writeProblem(w, r, Problem{Type: ProblemEdgeMismatch, Status: 403,
			Detail: "the batch's edge id does not match the credential's edge"}, 0)
		return
	}
	resp, err := h.opts.Ingest.Ingest(r.Context(), p.EdgeID, b)
	var ov *Overload
	switch {
	case errors.Is(err, ErrOverloaded):
		after := h.opts.OverloadRetryAfter
		if errors.As(err, &ov) && ov.RetryAfter > 0 {
			after = ov.RetryAfter
		}
		writeProblem(w, r, Problem{Type: ProblemOverloaded, Status: 503,
			Detail: "ingest is overloaded; retry later"}, after)
		return
	case errors.Is(err, ErrInvalidBatch):
		writeProblem(w, r, Problem{Type: ProblemInvalidBatch, Status: 400, Title: "Invalid batch",
			Detail: err.Error()}, 0)
		return
	case err != nil:
		h.internal(w, r, "ingest", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) putBuf(b *bytes.Buffer) {
	// Do not keep huge buffers alive in the pool.
	if b.Cap() <= 4<<20 {
		h.bufs.Put(b)
	}
}

// readBody reads at most limit bytes of the body into buf; it answers 413
// when the body is larger and 400 when it cannot be read.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, limit int64) bool {
	if r.ContentLength > limit {
		writeProblem(w, r, Problem{Type: ProblemTooLarge, Status: 413,
			Detail: "body larger than " + itoa(limit) + " bytes"}, 0)
		return false
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeProblem(w, r, Problem{Type: ProblemTooLarge, Status: 413,
			Detail: "body larger than " + itoa(limit) + " bytes"}, 0)
		return false
	case err != nil:
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400,
			Detail: "cannot read body: " + err.Error()}, 0)
		return false
	}
	return true
}

// postStatus handles POST /api/v1/edges/{id}/status: an edge reports its
// own status only.
func (h *Handler) postStatus(w http.ResponseWriter, r *http.Request, p Principal) {
	id := r.PathValue("id")
	if q := parseQuery(r.URL.RawQuery).problem(); q != nil {
		writeProblem(w, r, *q, 0)
		return
	}
	if id != p.EdgeID {
		writeProblem(w, r, Problem{Type: ProblemEdgeMismatch, Status: 403,
			Detail: "an edge may only report its own status"}, 0)
		return
	}
	var buf bytes.Buffer
	if !h.readBody(w, r, &buf, h.opts.Limits.StatusBody) {
		return
	}
	var st wire.Status
	// Unknown fields are ignored, unlike everywhere else: edges are
	// upgraded one by one, and a newer edge's report must not be refused
	// by an older collector.
	dec := json.NewDecoder(&buf)
	if err := dec.Decode(&st); err != nil {
		writeProblem(w, r, Problem{Type: ProblemInvalidStatus, Status: 400,
			Detail: "status report: " + err.Error()}, 0)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeProblem(w, r, Problem{Type: ProblemInvalidStatus, Status: 400,
			Detail: "status report: data after the JSON object"}, 0)
		return
	}
	if st.EdgeID != "" && st.EdgeID != id {
		writeProblem(w, r, Problem{Type: ProblemInvalidStatus, Status: 400,
			Detail: "status report: edge_id does not match the URL"}, 0)
		return
	}
	st.EdgeID = id
	err := h.opts.Edges.SaveStatus(r.Context(), id, st, h.opts.Now().UTC())
	switch {
	case errors.Is(err, ErrNotFound):
		h.notFound(w, r, "edge")
	case err != nil:
		h.internal(w, r, "save status", err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// List is the envelope of every listing: one page of items and, when there
// are more, the relative URL of the next page.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// writeList sends a page, with the next page's URL in both the body and a
// Link header. The next URL keeps the request's filters and replaces cursor.
func writeList[T any](w http.ResponseWriter, r *http.Request, items []T, next string) {
	if items == nil {
		items = []T{}
	}
	l := List[T]{Items: items}
	if next != "" {
		q := r.URL.Query()
		q.Set("cursor", next)
		u := url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: q.Encode()}
		l.Next = u.String()
		w.Header().Set("Link", "<"+l.Next+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, l)
}

// pageError answers for a store error of a listing.
func (h *Handler) pageError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, ErrInvalidQuery) {
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400, Title: "Invalid query parameters",
			Detail: err.Error()}, 0)
		return
	}
	h.internal(w, r, what, err)
}

func (h *Handler) listSensors(w http.ResponseWriter, r *http.Request, _ Principal) {
	q := parseQuery(r.URL.RawQuery, "site", "asset", "type", "edge", "cursor", "limit")
	f := SensorFilter{Site: q.str("site"), Asset: q.str("asset"), Type: q.str("type"), EdgeID: q.str("edge")}
	pg := q.page(h.opts.Limits)
	if p := q.problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	items, next, err := h.opts.Sensors.ListSensors(r.Context(), f, pg)
	if err != nil {
		h.pageError(w, r, "list sensors", err)
		return
	}
	writeList(w, r, items, next)
}

func (h *Handler) getSensor(w http.ResponseWriter, r *http.Request, _ Principal) {
	if p := parseQuery(r.URL.RawQuery).problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	s, err := h.opts.Sensors.GetSensor(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		h.notFound(w, r, "sensor")
	case err != nil:
		h.internal(w, r, "get sensor", err)
	default:
		writeJSON(w, http.StatusOK, s)
	}
}

func (h *Handler) readings(w http.ResponseWriter, r *http.Request, _ Principal) {
	rq, pg, p := parseReadingsQuery(r.URL.RawQuery, h.opts.Now(), h.opts.Limits)
	if p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	rq.Sensor = r.PathValue("id")
	if _, err := h.opts.Sensors.GetSensor(r.Context(), rq.Sensor); err != nil {
		if errors.Is(err, ErrNotFound) {
			h.notFound(w, r, "sensor")
		} else {
			h.internal(w, r, "get sensor", err)
		}
		return
	}
	pts, next, err := h.opts.Readings.Readings(r.Context(), rq, pg)
	if err != nil {
		h.pageError(w, r, "readings", err)
		return
	}
	writeList(w, r, pts, next)
}

func (h *Handler) latest(w http.ResponseWriter, r *http.Request, _ Principal) {
	q := parseQuery(r.URL.RawQuery, "sensor")
	sensors := q.strs("sensor")
	switch {
	case len(sensors) == 0 && len(q.invalid) == 0:
		q.add("sensor", "at least one sensor is required")
	case len(sensors) > h.opts.Limits.MaxLatest:
		q.add("sensor", "at most "+itoa(int64(h.opts.Limits.MaxLatest))+" sensors per request")
	}
	if p := q.problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	pts, err := h.opts.Readings.LatestReadings(r.Context(), sensors)
	if err != nil {
		h.internal(w, r, "latest readings", err)
		return
	}
	writeList(w, r, pts, "")
}

func (h *Handler) listEdges(w http.ResponseWriter, r *http.Request, _ Principal) {
	q := parseQuery(r.URL.RawQuery, "cursor", "limit")
	pg := q.page(h.opts.Limits)
	if p := q.problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	items, next, err := h.opts.Edges.ListEdges(r.Context(), pg)
	if err != nil {
		h.pageError(w, r, "list edges", err)
		return
	}
	writeList(w, r, items, next)
}

func (h *Handler) getEdge(w http.ResponseWriter, r *http.Request, _ Principal) {
	if p := parseQuery(r.URL.RawQuery).problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	e, err := h.opts.Edges.GetEdge(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		h.notFound(w, r, "edge")
	case err != nil:
		h.internal(w, r, "get edge", err)
	default:
		writeJSON(w, http.StatusOK, e)
	}
}

// lossFilter reads the filters shared by /rejected and /gaps.
func lossFilter(q *queryParser) (edge, sensor, reason string, from, to time.Time) {
	edge, sensor, reason = q.str("edge"), q.str("sensor"), q.str("reason")
	from, _ = q.time("from")
	to, _ = q.time("to")
	if !from.IsZero() && !to.IsZero() && !from.Before(to) && len(q.invalid) == 0 {
		q.add("from", "must be before to")
	}
	return
}

var lossParams = []string{"edge", "sensor", "reason", "from", "to", "cursor", "limit"}

func (h *Handler) listRejected(w http.ResponseWriter, r *http.Request, _ Principal) {
	q := parseQuery(r.URL.RawQuery, lossParams...)
	var f RejectedFilter
	f.EdgeID, f.Sensor, f.Reason, f.From, f.To = lossFilter(q)
	pg := q.page(h.opts.Limits)
	if p := q.problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	items, next, err := h.opts.Losses.ListRejected(r.Context(), f, pg)
	if err != nil {
		h.pageError(w, r, "list rejected", err)
		return
	}
	writeList(w, r, items, next)
}

func (h *Handler) listGaps(w http.ResponseWriter, r *http.Request, _ Principal) {
	q := parseQuery(r.URL.RawQuery, lossParams...)
	var f GapFilter
	f.EdgeID, f.Sensor, f.Reason, f.From, f.To = lossFilter(q)
	pg := q.page(h.opts.Limits)
	if p := q.problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	items, next, err := h.opts.Losses.ListGaps(r.Context(), f, pg)
	if err != nil {
		h.pageError(w, r, "list gaps", err)
		return
	}
	writeList(w, r, items, next)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request, what string) {
	writeProblem(w, r, Problem{Type: ProblemNotFound, Status: 404, Detail: what + " not found"}, 0)
}

// internal logs err and answers 500 without exposing it.
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.log.Error(what, "route", infoFrom(r.Context()).route, "err", err)
	writeProblem(w, r, Problem{Type: ProblemInternal, Status: 500, Detail: what + " failed"}, 0)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
