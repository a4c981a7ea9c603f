package eval

import (
	"os"
	"testing"
)

func TestDiag(t *testing.T) {
	if os.Getenv("EVAL_DIAG") == "" {
		t.Skip("set EVAL_DIAG=1")
	}
	suite := StandardSuite(1)
	for _, c := range Candidates() {
		for _, d := range suite {
			a, _ := c.Build(d)
			if a == nil {
				continue
			}
			r := Evaluate(d.Times, Run(a, d), Windows(d.Faults), DefaultOptions(d))
			t.Logf("%-12s %-8s events %3d false %3d detected %d/%d", c.Name[:min(12, len(c.Name))], d.Spec.Name, r.Events, r.FalseEvents, r.Detected, r.Windows)
		}
	}
}
