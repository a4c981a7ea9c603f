package eval

import (
	"fmt"
	"os"
	"testing"

	"github.com/smartmaint/smartmaint/models"
)

// TestSweep prints the default ensemble's quality across thresholds (the
// measurement DefaultThreshold was chosen by). EVAL_SWEEP=1 to run.
func TestSweep(t *testing.T) {
	if os.Getenv("EVAL_SWEEP") == "" {
		t.Skip("set EVAL_SWEEP=1")
	}
	suite := StandardSuite(1)
	for _, thr := range []float64{0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7} {
		var tot Result
		for _, d := range suite {
			var ds []models.Detector
			for range d.Spec.Channels {
				c := models.DefaultEnsembleConfig()
				c.Threshold = thr
				ds = append(ds, models.NewEnsemble(c))
			}
			var row models.RowDetector
			if len(ds) > 1 {
				c := models.DefaultPCAConfig()
				c.Threshold = thr
				row = models.NewOnlinePCA(len(ds), d.TrainRows, c)
			}
			a := models.NewAsset(ds, row, thr)
			tot.Add(Evaluate(d.Times, Run(a, d), Windows(d.Faults), DefaultOptions(d)))
		}
		fmt.Printf("thr %.2f recall %.2f precision %.2f F1 %.2f FA/sd %.3f events %d\n", thr, tot.Recall, tot.Precision, tot.F1, tot.FalsePerSensorDay, tot.Events)
	}
}
