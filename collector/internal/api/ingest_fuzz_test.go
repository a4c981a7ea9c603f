package api

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// FuzzIngestBody sends arbitrary bodies through the ingest handler with
// the real wire decoder: every answer is 200 (decoded, for this edge),
// 400 (undecodable: the edge dead-letters it), 403 (another edge's batch)
// or 413, never a 5xx or a panic.
func FuzzIngestBody(f *testing.F) {
	good := &wire.Batch{EdgeID: "e1", BatchID: "b1", FirstSeq: 1, LastSeq: 2, Readings: []wire.Reading{
		{Sensor: "s/l/a/x", Time: 1, Value: 1, Seq: 1}, {Sensor: "s/l/a/y", Time: 2, Value: 2, Seq: 2}}}
	other := &wire.Batch{EdgeID: "e2", BatchID: "b2"}
	for _, b := range []*wire.Batch{good, other} {
		body, err := wire.EncodeBatch(nil, b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
		f.Add(body[:len(body)/2])
	}
	f.Add([]byte{})
	f.Add([]byte("SMB\x01garbage"))
	h := newTestHandler(f, newFake(), func(o *Options) {
		o.Decode = wire.DecodeBatch
		o.Limits.IngestBody = 1 << 16
		o.Limits.IngestDecoded = 1 << 20
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/api/v1/ingest", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secEdge)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case 200, 400, 403, 413:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
