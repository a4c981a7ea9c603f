package cli

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/edge/internal/detect"
	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
)

func newScoreCmd(stdio IO) *cobra.Command {
	var (
		input, output, modelFile, detector string
		trustedKeys                        []string
		trainRows                          int
		delimiter                          string
		columns                            []string
	)
	cmd := &cobra.Command{
		Use:   "score",
		Short: "Replay a CSV through the edge's anomaly scoring (offline backtest)",
		Long: `score replays a CSV file through exactly the scoring code the live agent runs and
writes one output row per input row: timestamp,anomaly_score,label.

Input: a header line; the first column is a timestamp (RFC 3339 or
YYYY-MM-DD HH:MM:SS); every other column is a numeric channel. One channel is
one sensor; several channels are one asset's sensors, scored together. Empty
cells, NaN and unparseable values are treated as missing (and reported).
The delimiter (',' or ';') is detected from the header.

The first --train-rows rows are only used to fit and calibrate and get empty
scores. The score of a row depends only on the rows up to it (no look-ahead).
The score is in [0,1]; label is 1 when the score reaches the model's threshold.`,
		Example: `  sm-edge score --input pump7.csv --output scores.csv
  sm-edge score --input pump7.csv --output scores.csv --detector pca --train-rows 1440
  sm-edge score --input pump7.csv --output scores.csv --model pump7.smm --trusted-key models.pub
  sm-edge score --input skab.csv --output scores.csv --columns Accelerometer1RMS,Current,Pressure`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" || output == "" {
				return fmt.Errorf("--input and --output are required")
			}
			if modelFile != "" && cmd.Flags().Changed("detector") {
				return fmt.Errorf("use either --model or --detector, not both")
			}
			if trainRows < 0 {
				return fmt.Errorf("--train-rows must be ≥ 0")
			}
			opts := detect.ReplayOptions{Detector: detector, TrainRows: trainRows, Columns: columns}
			if modelFile != "" {
				b, err := loadModel(modelFile, trustedKeys)
				if err != nil {
					return err
				}
				opts.Model = b
			} else if detector != models.NamePCA {
				if _, err := models.New(detector); err != nil {
					return fmt.Errorf("--detector: %w", err)
				}
			}
			switch delimiter {
			case "":
			case ",", ";", "\t":
				opts.Delimiter = rune(delimiter[0])
			case "tab":
				opts.Delimiter = '\t'
			default:
				return fmt.Errorf("--delimiter must be ',', ';' or 'tab'")
			}
			in, err := os.Open(input)
			if err != nil {
				return fmt.Errorf("open input: %w", err)
			}
			defer in.Close()
			out, err := os.Create(output)
			if err != nil {
				return fmt.Errorf("create output: %w", err)
			}
			warned := 0
			opts.Warn = func(msg string) {
				warned++
				if warned <= 20 {
					fmt.Fprintf(stdio.Err, "%s:%s\n", input, msg)
				}
			}
			st, err := detect.ScoreCSV(cmd.Context(), in, out, opts)
			if cerr := out.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("write output: %w", cerr)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", input, err)
			}
			if warned > 20 {
				fmt.Fprintf(stdio.Err, "%s: %d more problems not shown\n", input, warned-20)
			}
			rate := float64(st.Rows) / st.Elapsed.Seconds()
			fmt.Fprintf(stdio.Err, "scored %d rows (%d after training, %d anomalous) with %s in %s: %.0f rows/s\n",
				st.Rows, st.Scored, st.Anomalous, st.Ref, st.Elapsed.Round(1e6), rate)
			if st.BadRows > 0 || st.BadCells > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%s: %d bad rows, %d bad cells (see above); output written", input, st.BadRows, st.BadCells)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&input, "input", "", "input CSV file")
	f.StringVar(&output, "output", "", "output CSV file (timestamp,anomaly_score,label)")
	f.StringVar(&modelFile, "model", "", "signed model artifact to score with")
	f.StringArrayVar(&trustedKeys, "trusted-key", nil, "public key file trusted to sign models (repeatable; required with --model)")
	f.StringVar(&detector, "detector", models.NameEnsemble, "built-in detector: "+strings.Join(append(models.Builtins(), models.NamePCA), ", "))
	f.IntVar(&trainRows, "train-rows", 0, "first N rows only fit and calibrate (empty scores)")
	f.StringVar(&delimiter, "delimiter", "", "field delimiter (default: detect ',' or ';')")
	f.StringSliceVar(&columns, "columns", nil, "channels to score, by header name (default: every column after the timestamp)")
	return cmd
}

func loadModel(path string, keyFiles []string) (*models.Built, error) {
	if len(keyFiles) == 0 {
		return nil, fmt.Errorf("--model needs at least one --trusted-key")
	}
	var keys []ed25519.PublicKey
	for _, kf := range keyFiles {
		text, err := os.ReadFile(kf)
		if err != nil {
			return nil, fmt.Errorf("read trusted key: %w", err)
		}
		k, err := artifact.ParsePublicKey(text)
		if err != nil {
			return nil, fmt.Errorf("trusted key %s: %w", kf, err)
		}
		keys = append(keys, k)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	m, _, err := artifact.Decode(data, keys)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	b, err := models.FromArtifact(m)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return b, nil
}
