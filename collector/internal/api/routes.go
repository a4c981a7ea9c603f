package api

import (
	"net/http"
	"slices"
	"strings"
)

// Who may call a route. A nil set means no credential is needed.
var (
	public   []Role
	edgeOnly = []Role{RoleEdge}
	readers  = []Role{RoleViewer, RoleOperator, RoleAdmin}
	// operators may act on alerts (ack, resolve).
	operators = []Role{RoleOperator, RoleAdmin}
	admins    = []Role{RoleAdmin}
)

// route is one entry of the route table: a Go 1.22 ServeMux pattern, the
// roles allowed to call it and its handler. codes lists the statuses the
// handler itself may answer with (on top of the common ones added by
// authentication and routing); the OpenAPI test checks them against the
// document.
type route struct {
	pattern string
	roles   []Role
	handle  func(w http.ResponseWriter, r *http.Request, p Principal)
	codes   []int
}

func (rt *route) public() bool { return rt.roles == nil }

func (rt *route) allows(role Role) bool { return slices.Contains(rt.roles, role) }

// routeTable is the whole API. Adding an endpoint is one line here (plus
// its entry in openapi.json, which a test enforces).
func (h *Handler) routeTable() []route {
	rts := []route{
		{"GET /healthz", public, h.healthz, []int{200}},
		{"GET /readyz", public, h.readyz, []int{200, 503}},
		{"GET /openapi.json", public, h.openapi, []int{200}},
		{"POST /api/v1/ingest", edgeOnly, h.ingest, []int{200, 400, 403, 413, 500, 503}},
		{"POST /api/v1/edges/{id}/status", edgeOnly, h.postStatus, []int{204, 400, 403, 404, 413, 500}},
		{"GET /api/v1/sensors", readers, h.listSensors, []int{200, 400, 500}},
		{"GET /api/v1/sensors/{id}", readers, h.getSensor, []int{200, 400, 404, 500}},
		{"GET /api/v1/sensors/{id}/readings", readers, h.readings, []int{200, 400, 404, 500}},
		{"GET /api/v1/readings/latest", readers, h.latest, []int{200, 400, 500}},
		{"GET /api/v1/edges", readers, h.listEdges, []int{200, 400, 500}},
		{"GET /api/v1/edges/{id}", readers, h.getEdge, []int{200, 400, 404, 500}},
		{"GET /api/v1/rejected", readers, h.listRejected, []int{200, 400, 500}},
		{"GET /api/v1/gaps", readers, h.listGaps, []int{200, 400, 500}},
		{"GET /api/v1/alerts", readers, h.listAlerts, []int{200, 400, 500}},
		{"GET /api/v1/alerts/{id}", readers, h.getAlert, []int{200, 400, 404, 500}},
		{"POST /api/v1/alerts/{id}/ack", operators, h.ackAlert, []int{200, 400, 404, 409, 413, 500}},
		{"POST /api/v1/alerts/{id}/resolve", operators, h.resolveAlert, []int{200, 400, 404, 409, 413, 500}},
		{"POST /api/v1/edges", admins, h.registerEdge, []int{201, 400, 409, 413, 500}},
		{"DELETE /api/v1/edges/{id}", admins, h.revokeEdge, []int{204, 400, 404, 500}},
		{"GET /api/v1/apikeys", admins, h.listAPIKeys, []int{200, 400, 500}},
		{"POST /api/v1/apikeys", admins, h.createAPIKey, []int{201, 400, 409, 413, 500}},
		{"DELETE /api/v1/apikeys/{id}", admins, h.revokeAPIKey, []int{204, 400, 404, 500}},
	}
	if h.opts.Metrics != nil {
		rts = append(rts, route{"GET /metrics", readers, h.serveMetrics, []int{200}})
	}
	return rts
}

// register installs every route, plus a catch-all per path that answers
// 405 with Allow for other methods and a global 404, both as problems.
func (h *Handler) register() {
	allow := map[string][]string{}
	var paths []string
	for i := range h.routes {
		rt := &h.routes[i]
		method, path, _ := strings.Cut(rt.pattern, " ")
		if _, ok := allow[path]; !ok {
			paths = append(paths, path)
		}
		allow[path] = append(allow[path], method)
		if method == http.MethodGet {
			allow[path] = append(allow[path], http.MethodHead)
		}
		h.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			infoFrom(r.Context()).route = rt.pattern
			var p Principal
			if !rt.public() {
				var ok bool
				if p, ok = h.authenticate(w, r, rt); !ok {
					return
				}
			}
			rt.handle(w, r, p)
		})
	}
	for _, path := range paths {
		methods := strings.Join(allow[path], ", ")
		h.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			writeProblem(w, r, Problem{Type: ProblemNotAllowed, Status: 405,
				Detail: "allowed methods: " + methods}, 0)
		})
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, Problem{Type: ProblemNotFound, Status: 404, Detail: "no such endpoint"}, 0)
	})
}
