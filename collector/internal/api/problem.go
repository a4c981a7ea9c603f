package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ProblemContentType is the media type of error bodies (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem type URIs. Clients may branch on them; in particular an edge
// treats ProblemUndecodable and ProblemInvalidBatch (every 400 of the
// ingest endpoint) as "dead-letter this batch, do not retry".
const (
	ProblemUndecodable   = "urn:smartmaint:problem:undecodable-batch"
	ProblemInvalidBatch  = "urn:smartmaint:problem:invalid-batch"
	ProblemBadRequest    = "urn:smartmaint:problem:bad-request"
	ProblemUnauthorized  = "urn:smartmaint:problem:unauthorized"
	ProblemForbidden     = "urn:smartmaint:problem:forbidden"
	ProblemNotFound      = "urn:smartmaint:problem:not-found"
	ProblemConflict      = "urn:smartmaint:problem:conflict"
	ProblemNotAllowed    = "urn:smartmaint:problem:method-not-allowed"
	ProblemTooLarge      = "urn:smartmaint:problem:body-too-large"
	ProblemRateLimited   = "urn:smartmaint:problem:rate-limited"
	ProblemOverloaded    = "urn:smartmaint:problem:overloaded"
	ProblemUnavailable   = "urn:smartmaint:problem:unavailable"
	ProblemInternal      = "urn:smartmaint:problem:internal"
	ProblemEdgeMismatch  = "urn:smartmaint:problem:edge-mismatch"
	ProblemInvalidStatus = "urn:smartmaint:problem:invalid-status"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// InvalidParams lists each bad query parameter (RFC 9457 §3 example
	// extension).
	InvalidParams []InvalidParam `json:"invalid_params,omitempty"`
}

// InvalidParam names one bad query parameter and why it is bad.
type InvalidParam struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// writeProblem sends p with its status. retryAfter > 0 adds Retry-After in
// whole seconds, rounded up.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem, retryAfter time.Duration) {
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(retrySeconds(retryAfter), 10))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// retrySeconds rounds d up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
