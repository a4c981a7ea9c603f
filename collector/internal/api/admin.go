package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// adminBodyLimit bounds the JSON bodies of the admin routes.
const adminBodyLimit = 4 << 10

// NewEdge is the answer to POST /api/v1/edges: the edge and its token,
// shown only this once.
type NewEdge struct {
	Edge  Edge   `json:"edge"`
	Token string `json:"token"`
}

// NewAPIKey is the answer to POST /api/v1/apikeys: the key's metadata and
// the key itself, shown only this once.
type NewAPIKey struct {
	APIKey APIKey `json:"api_key"`
	Key    string `json:"key"`
}

// decodeBody reads a small strict JSON body into v; it answers and returns
// false on any problem.
func (h *Handler) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if p := parseQuery(r.URL.RawQuery).problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return false
	}
	var buf bytes.Buffer
	if !h.readBody(w, r, &buf, adminBodyLimit) {
		return false
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400, Detail: "request body: " + err.Error()}, 0)
		return false
	}
	return true
}

// credError answers for an error of the Credentials interface.
func (h *Handler) credError(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case errors.Is(err, ErrInvalidArgument):
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400, Detail: err.Error()}, 0)
	case errors.Is(err, ErrConflict):
		writeProblem(w, r, Problem{Type: ProblemConflict, Status: 409, Detail: err.Error()}, 0)
	case errors.Is(err, ErrNotFound):
		h.notFound(w, r, what)
	default:
		h.internal(w, r, what, err)
	}
}

// writeSecret sends a response holding a secret: never cached.
func writeSecret(w http.ResponseWriter, v any) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, v)
}

func (h *Handler) registerEdge(w http.ResponseWriter, r *http.Request, _ Principal) {
	var req struct {
		Name string `json:"name"`
	}
	if !h.decodeBody(w, r, &req) {
		return
	}
	e, token, err := h.opts.Creds.RegisterEdge(r.Context(), req.Name)
	if err != nil {
		h.credError(w, r, "edge", err)
		return
	}
	writeSecret(w, NewEdge{Edge: e, Token: token})
}

func (h *Handler) revokeEdge(w http.ResponseWriter, r *http.Request, _ Principal) {
	if p := parseQuery(r.URL.RawQuery).problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	if err := h.opts.Creds.RevokeEdge(r.Context(), r.PathValue("id")); err != nil {
		h.credError(w, r, "edge", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) listAPIKeys(w http.ResponseWriter, r *http.Request, _ Principal) {
	if p := parseQuery(r.URL.RawQuery).problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	keys, err := h.opts.Creds.ListAPIKeys(r.Context())
	if err != nil {
		h.internal(w, r, "list API keys", err)
		return
	}
	writeList(w, r, keys, "")
}

func (h *Handler) createAPIKey(w http.ResponseWriter, r *http.Request, _ Principal) {
	var req struct {
		Name string `json:"name"`
		Role Role   `json:"role"`
	}
	if !h.decodeBody(w, r, &req) {
		return
	}
	switch req.Role {
	case RoleViewer, RoleOperator, RoleAdmin:
	default:
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400,
			Detail: "role must be viewer, operator or admin"}, 0)
		return
	}
	k, key, err := h.opts.Creds.CreateAPIKey(r.Context(), req.Name, req.Role)
	if err != nil {
		h.credError(w, r, "API key", err)
		return
	}
	writeSecret(w, NewAPIKey{APIKey: k, Key: key})
}

func (h *Handler) revokeAPIKey(w http.ResponseWriter, r *http.Request, _ Principal) {
	if p := parseQuery(r.URL.RawQuery).problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400, Detail: "API key id must be a positive integer"}, 0)
		return
	}
	if err := h.opts.Creds.RevokeAPIKey(r.Context(), id); err != nil {
		h.credError(w, r, "API key", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
