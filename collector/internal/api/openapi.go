package api

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3.1 document of the whole API. It is written
// by hand; TestOpenAPIMatchesRoutes keeps it true to the route table and
// to the status codes the handlers answer with.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI document served at /openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

func (h *Handler) openapi(w http.ResponseWriter, r *http.Request, _ Principal) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDoc)
}
