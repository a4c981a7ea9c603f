package models

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/smartmaint/smartmaint/models/artifact"
)

func TestFromArtifactRejectsBadParams(t *testing.T) {
	base := artifact.Model{Name: "m", Version: "1", Threshold: 0.5, Calibration: artifact.Calibration{Method: "tail-log10", Decades: 10}}
	tests := []struct {
		kind, params, want string
	}{
		{NameEWMA, `{"alpha": 2}`, "alpha"},
		{NameEWMA, `{"alpha": 0.1, "bogus": 1}`, "unknown field"},
		{NameMAD, `{"window": 3, "clip": 3}`, "window"},
		{NameEnsemble, `{"components": ["ewma", "rm -rf"]}`, "unknown component"},
		{NameEnsemble, `{"components": ["ensemble"]}`, "unknown component"},
		{NamePCA, `{"mean": [1, 2], "scale": [1], "components": [[1, 0]], "eigenvalues": [1]}`, "scales"},
		{NamePCA, `{"mean": [1, 2], "scale": [1, 1], "components": [[1, 0]], "eigenvalues": [-1], "t2": {"counts": []}, "spe": {"counts": []}}`, "eigenvalue"},
		{"teapot", `{}`, "unknown kind"},
	}
	for _, tc := range tests {
		m := base
		m.Kind, m.Params = tc.kind, json.RawMessage(tc.params)
		_, err := FromArtifact(&m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: err = %v, want it to mention %q", tc.kind, tc.params, err, tc.want)
		}
	}
}
