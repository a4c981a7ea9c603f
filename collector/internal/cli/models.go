package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/smartmaint/smartmaint/collector/internal/modelreg"
	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/models/train"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/objstore"
)

// Environment variables read by `sm-collector models` (flags override).
const (
	envModelsDir      = "SM_COLLECTOR_MODELS_DIR"
	envModelsEndpoint = "SM_COLLECTOR_MODELS_ENDPOINT"
	envModelsBucket   = "SM_COLLECTOR_MODELS_BUCKET"
	envModelsPrefix   = "SM_COLLECTOR_MODELS_PREFIX"
	envModelsRegion   = "SM_COLLECTOR_MODELS_REGION"
	envModelsAccess   = "SM_COLLECTOR_MODELS_ACCESS_KEY_ID"
	envModelsSecret   = "SM_COLLECTOR_MODELS_SECRET_ACCESS_KEY"
	envDatabaseURL    = "DATABASE_URL"
)

// registryFlags locate the registry: PostgreSQL and the object store
// (an S3 bucket, or a local directory with --dir).
type registryFlags struct {
	database, dir, endpoint, bucket, prefix, region string
}

func envDefault(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (f *registryFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.database, "database", os.Getenv(envDatabaseURL), "PostgreSQL URL of the collector database (env "+envDatabaseURL+")")
	pf.StringVar(&f.dir, "dir", os.Getenv(envModelsDir), "local directory for artifacts and the manifest, instead of S3 (env "+envModelsDir+")")
	pf.StringVar(&f.endpoint, "s3-endpoint", os.Getenv(envModelsEndpoint), "S3 endpoint URL; empty for AWS (env "+envModelsEndpoint+")")
	pf.StringVar(&f.bucket, "bucket", os.Getenv(envModelsBucket), "S3 bucket for artifacts and the manifest (env "+envModelsBucket+")")
	pf.StringVar(&f.prefix, "prefix", os.Getenv(envModelsPrefix), "key prefix inside the bucket (env "+envModelsPrefix+")")
	pf.StringVar(&f.region, "region", envDefault(envModelsRegion, "us-east-1"), "S3 region (env "+envModelsRegion+")")
}

// open connects to PostgreSQL and the object store and prepares the
// registry tables.
func (f *registryFlags) open(ctx context.Context) (*modelreg.Registry, *pgxpool.Pool, error) {
	if f.database == "" {
		return nil, nil, fmt.Errorf("no database: set --database or %s", envDatabaseURL)
	}
	store, err := f.store(ctx)
	if err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.New(ctx, f.database)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open database: %w", err)
	}
	reg, err := modelreg.New(store, pool, modelreg.Options{Prefix: f.prefix})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	if err := reg.Init(ctx); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return reg, pool, nil
}

// store returns the directory store for --dir, else the S3 bucket.
// S3 credentials come from SM_COLLECTOR_MODELS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY
// or, when unset, the AWS default chain (environment, shared files, roles).
func (f *registryFlags) store(ctx context.Context) (objstore.Store, error) {
	if f.dir != "" {
		if f.bucket != "" || f.endpoint != "" {
			return nil, fmt.Errorf("--dir (%s) and --bucket/--s3-endpoint are alternatives; give one", envModelsDir)
		}
		return objstore.Dir{Root: f.dir}, nil
	}
	if f.bucket == "" {
		return nil, fmt.Errorf("no model store: set --dir (%s) for a local directory, or --bucket (%s) for S3", envModelsDir, envModelsBucket)
	}
	var opts []func(*awsconfig.LoadOptions) error
	opts = append(opts, awsconfig.WithRegion(f.region))
	if a, s := os.Getenv(envModelsAccess), os.Getenv(envModelsSecret); a != "" || s != "" {
		if a == "" || s == "" {
			return nil, fmt.Errorf("set both %s and %s", envModelsAccess, envModelsSecret)
		}
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(a, s, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot load S3 settings: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if f.endpoint != "" {
			o.BaseEndpoint = aws.String(f.endpoint)
			o.UsePathStyle = true
		}
	})
	return objstore.S3{Client: client, Bucket: f.bucket}, nil
}

func newModelsCmd(stdio IO) *cobra.Command {
	var rf registryFlags
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Train, publish and manage the anomaly models the edges run",
		Long: `models trains detectors from stored history or a CSV file, signs and publishes
them with the fleet manifest (see collector/internal/modelreg/FORMAT.md) to S3
or a local directory, and chooses which model each target (edge, sensor type,
sensor glob) runs.

Registry commands need the database (--database or DATABASE_URL) and the
model store: a local directory (--dir, the same layout as the bucket; edges
read it with models.dir) or an S3 bucket (--bucket, --s3-endpoint for
S3-compatible servers). S3 credentials
come from SM_COLLECTOR_MODELS_ACCESS_KEY_ID / _SECRET_ACCESS_KEY or the AWS
default chain; they are never taken as flags.`,
		Example: `  sm-collector models keygen --out /etc/smartmaint/models.key > models.pub
  sm-collector models train --csv pump7.csv --name pump7 --out pump7.json
  sm-collector models publish pump7.json --key /etc/smartmaint/models.key --promote type=vibration
  sm-collector models list
  sm-collector models rollback --target type=vibration
  sm-collector models promote pump7@1 --target type=vibration --dir /srv/smartmaint/models`,
	}
	rf.register(cmd)
	cmd.AddCommand(
		newModelsKeygenCmd(stdio),
		newModelsTrainCmd(stdio, &rf),
		newModelsPublishCmd(stdio, &rf),
		newModelsListCmd(stdio, &rf),
		newModelsPromoteCmd(stdio, &rf),
		newModelsRollbackCmd(stdio, &rf),
	)
	return cmd
}

func newModelsKeygenCmd(stdio IO) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create an Ed25519 signing key; print its public key",
		Long: `keygen writes a new signing key to --out (mode 0600, never overwritten) and
prints the public key ("ed25519:<base64>") on stdout, for the edges'
models.trusted_keys.`,
		Example: `  sm-collector models keygen --out models.key > models.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			pub, priv, err := ed25519.GenerateKey(nil)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("cannot create key file: %w", err)
			}
			if _, err := io.WriteString(f, modelreg.FormatPrivateKey(priv)); err != nil {
				f.Close()
				return fmt.Errorf("write key file %s: %w", out, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write key file %s: %w", out, err)
			}
			fmt.Fprintf(stdio.Err, "signing key written to %s (key id %s); keep it secret\n", out, artifact.KeyID(pub))
			_, err = fmt.Fprintln(stdio.Out, artifact.FormatPublicKey(pub))
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file for the new private key")
	return cmd
}

func newModelsTrainCmd(stdio IO, rf *registryFlags) *cobra.Command {
	var (
		csvFile, kind, name, ver, sensorType, out, keyFile string
		sensors                                            []string
		from, to                                           string
		step                                               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Fit a model from stored history or a CSV file and print its evaluation",
		Long: `train fits a detector to normal operation and writes the model to --out:
the unsigned model (JSON) for "models publish", or with --key a signed
artifact. It prints the evaluation figures to stderr and name@version to
stdout.

Data comes from a CSV file (--csv; the sm-edge score input format: header,
timestamp first, one numeric column per sensor) or from the collector's
database (--sensors, --from, --to, optionally --step to average each sensor
into aligned buckets). Several sensors make one asset model: --kind pca
learns how they move together. Bad rows and cells are reported and skipped.`,
		Example: `  sm-collector models train --csv pump7.csv --name pump7 --out pump7.json
  sm-collector models train --sensors site1/pump7/vib,site1/pump7/current,site1/pump7/temp \
      --from 2026-10-01T00:00:00Z --to 2026-11-01T00:00:00Z --step 1m --kind pca --name pump7 --out pump7.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if name == "" || out == "" {
				return errors.New("--name and --out are required")
			}
			if (csvFile == "") == (len(sensors) == 0) {
				return errors.New("give either --csv FILE or --sensors with --from/--to")
			}
			progress := func(rows int) { fmt.Fprintf(stdio.Err, "read %d rows…\n", rows) }
			var tab *modelreg.Table
			var source string
			if csvFile != "" {
				f, err := os.Open(csvFile)
				if err != nil {
					return err
				}
				defer f.Close()
				tab, err = modelreg.ReadCSV(f, csvFile, progress)
				if err != nil {
					return err
				}
				source = "csv:" + filepath.Base(csvFile)
			} else {
				q := modelreg.HistoryQuery{Sensors: sensors, Step: step}
				var err error
				if q.From, err = time.Parse(time.RFC3339, from); err != nil {
					return fmt.Errorf("--from: %w", err)
				}
				if q.To, err = time.Parse(time.RFC3339, to); err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				if rf.database == "" {
					return fmt.Errorf("training from history needs --database or %s", envDatabaseURL)
				}
				pool, err := pgxpool.New(ctx, rf.database)
				if err != nil {
					return fmt.Errorf("cannot open database: %w", err)
				}
				defer pool.Close()
				if tab, err = modelreg.LoadHistory(ctx, pool, q, progress); err != nil {
					return err
				}
				source = fmt.Sprintf("db:%s %s..%s", strings.Join(sensors, ","), from, to)
			}
			for _, p := range tab.Skipped {
				fmt.Fprintln(stdio.Err, "skipped:", p)
			}
			if tab.SkippedCount > len(tab.Skipped) {
				fmt.Fprintf(stdio.Err, "skipped: … %d more problems\n", tab.SkippedCount-len(tab.Skipped))
			}
			if kind == "" {
				kind = models.NameEnsemble
				if len(tab.Sensors) > 1 {
					kind = models.NamePCA
				}
			}
			if ver == "" {
				ver = time.Now().UTC().Format("20060102.150405")
			}
			fmt.Fprintf(stdio.Err, "training %s on %d rows × %d sensors…\n", kind, len(tab.Rows), len(tab.Sensors))
			start := time.Now()
			m, err := train.Fit(tab.Rows, train.Options{Kind: kind, Name: name, Version: ver,
				Sensors: tab.Sensors, SensorType: sensorType, Times: tab.Times, Source: source, Now: time.Now()})
			if err != nil {
				return err
			}
			printEvaluation(stdio.Err, m, tab, time.Since(start))
			var data []byte
			if keyFile != "" {
				priv, err := readSigningKey(keyFile)
				if err != nil {
					return err
				}
				if data, err = artifact.Encode(m, priv); err != nil {
					return err
				}
			} else {
				if data, err = json.MarshalIndent(m, "", "  "); err != nil {
					return err
				}
				data = append(data, '\n')
			}
			if err := os.WriteFile(out, data, 0o644); err != nil {
				return fmt.Errorf("write model: %w", err)
			}
			fmt.Fprintf(stdio.Err, "model written to %s\n", out)
			_, err = fmt.Fprintln(stdio.Out, m.Ref())
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&csvFile, "csv", "", "CSV file of normal operation")
	fl.StringSliceVar(&sensors, "sensors", nil, "sensor ids to train on from the database (comma separated; one asset)")
	fl.StringVar(&from, "from", "", "start of the training window (RFC 3339)")
	fl.StringVar(&to, "to", "", "end of the training window (RFC 3339, exclusive)")
	fl.DurationVar(&step, "step", 0, "average readings into buckets of this size (0: raw timestamps)")
	fl.StringVar(&kind, "kind", "", "detector kind: "+strings.Join(append([]string{models.NamePCA}, models.Builtins()...), ", ")+" (default pca for several sensors, else ensemble)")
	fl.StringVar(&name, "name", "", "model name")
	fl.StringVar(&ver, "version", "", "model version (default: UTC time, 20061231.150405)")
	fl.StringVar(&sensorType, "sensor-type", "", "sensor type the model applies to (instead of the sensor names)")
	fl.StringVar(&out, "out", "", "output file")
	fl.StringVar(&keyFile, "key", "", "signing key file: write a signed artifact instead of the unsigned model")
	return cmd
}

func printEvaluation(w io.Writer, m *artifact.Model, tab *modelreg.Table, took time.Duration) {
	fmt.Fprintf(w, "model %s (%s), threshold %.3f, trained in %s\n", m.Ref(), m.Kind, m.Threshold, took.Round(time.Millisecond))
	fmt.Fprintf(w, "  rows %d (%d input problems skipped), window %s .. %s\n", m.Training.Rows, tab.SkippedCount,
		m.Training.From.Format(time.RFC3339), m.Training.To.Format(time.RFC3339))
	keys := make([]string, 0, len(m.Training.Metrics))
	for k := range m.Training.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s = %.4g\n", k, m.Training.Metrics[k])
	}
	if r, ok := m.Training.Metrics["train_alarm_rate"]; ok && r > 0.01 {
		fmt.Fprintf(w, "  warning: the model flags %.1f %% of its own training data; is that data normal operation?\n", 100*r)
	}
}

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read signing key: %w", err)
	}
	priv, err := modelreg.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return priv, nil
}

func newModelsPublishCmd(stdio IO, rf *registryFlags) *cobra.Command {
	var (
		keyFile, promote string
		trustedFiles     []string
	)
	cmd := &cobra.Command{
		Use:   "publish FILE",
		Short: "Sign a model and upload it to the model store (S3 or --dir) and the registry",
		Long: `publish takes the model written by "models train" (unsigned JSON, signed with
--key) or an already signed artifact, checks that it verifies (against the
--key's public key and any --trusted-key files) and that its parameters are
valid, uploads it under its SHA-256 and records it. Edges run it only after
promote (or --promote TARGET here). Prints name@version on stdout.`,
		Example: `  sm-collector models publish pump7.json --key models.key
  sm-collector models publish pump7.json --key models.key --promote "edge=plant1,type=vibration"
  sm-collector models publish pump7.smm --trusted-key models.pub`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var trusted []ed25519.PublicKey
			for _, p := range trustedFiles {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				k, err := artifact.ParsePublicKey(b)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				trusted = append(trusted, k)
			}
			var priv ed25519.PrivateKey
			if keyFile != "" {
				if priv, err = readSigningKey(keyFile); err != nil {
					return err
				}
				trusted = append(trusted, priv.Public().(ed25519.PublicKey))
			}
			if !bytes.HasPrefix(data, []byte(artifact.Magic+"\n")) {
				if priv == nil {
					return fmt.Errorf("%s is not signed: give --key to sign it", args[0])
				}
				var m artifact.Model
				dec := json.NewDecoder(bytes.NewReader(data))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&m); err != nil {
					return fmt.Errorf("%s: not a model: %w", args[0], err)
				}
				if data, err = artifact.Encode(&m, priv); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
			}
			if len(trusted) == 0 {
				return errors.New("give --key or --trusted-key: the artifact is verified before it is published")
			}
			var target mm.Target
			if promote != "" {
				if target, err = mm.ParseTarget(promote); err != nil {
					return err
				}
			}
			reg, pool, err := rf.open(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			m, err := reg.Publish(ctx, data, trusted)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdio.Err, "published %s@%s (%s, %d bytes, sha256 %s)\n", m.Name, m.Version, m.Kind, m.Size, m.SHA256)
			if promote != "" {
				if _, err := reg.Promote(ctx, target, m.Name, m.Version); err != nil {
					return err
				}
				fmt.Fprintf(stdio.Err, "promoted %s@%s for %s\n", m.Name, m.Version, target.Key())
			}
			_, err = fmt.Fprintf(stdio.Out, "%s@%s\n", m.Name, m.Version)
			return err
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "signing key file (sm-collector models keygen)")
	cmd.Flags().StringSliceVar(&trustedFiles, "trusted-key", nil, "public key file(s) an already signed artifact may be signed with")
	cmd.Flags().StringVar(&promote, "promote", "", "also promote it for this target (edge=E,type=T,sensor=GLOB or *)")
	return cmd
}

func newModelsListCmd(stdio IO, rf *registryFlags) *cobra.Command {
	var manifest bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered models, or the manifest's targets",
		Example: `  sm-collector models list
  sm-collector models list --manifest`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			reg, pool, err := rf.open(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			if manifest {
				m, err := reg.Manifest(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdio.Err, "manifest generation %d, updated %s\n", m.Generation, m.Updated.Format(time.RFC3339))
				fmt.Fprintln(tw, "TARGET\tACTIVE\tPROMOTED\tPREVIOUS")
				for _, e := range m.Entries {
					var prev []string
					for _, p := range e.Previous {
						prev = append(prev, p.ID())
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Target.Key(), e.Active.ID(), e.Active.Promoted.Format(time.RFC3339), strings.Join(prev, " "))
				}
				return tw.Flush()
			}
			list, err := reg.List(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(tw, "MODEL\tKIND\tSTATE\tTARGETS\tCREATED\tTRAIN_ALARM_RATE\tSHA256")
			for _, m := range list {
				rate := "-"
				if r, ok := m.Metrics["train_alarm_rate"]; ok {
					rate = fmt.Sprintf("%.4f", r)
				}
				fmt.Fprintf(tw, "%s@%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Version, m.Kind, m.State,
					strings.Join(m.Targets, " "), m.Created.UTC().Format(time.RFC3339), rate, m.SHA256[:12])
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&manifest, "manifest", false, "show the manifest in the store (what edges run) instead of the registry")
	return cmd
}

func parseModelRef(s string) (name, version string, err error) {
	name, version, ok := strings.Cut(s, "@")
	if !ok || name == "" || version == "" {
		return "", "", fmt.Errorf("model %q: want NAME@VERSION", s)
	}
	return name, version, nil
}

func newModelsPromoteCmd(stdio IO, rf *registryFlags) *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:   "promote NAME@VERSION",
		Short: "Make a published model the one a target runs",
		Long: `promote rewrites the manifest so that the target runs NAME@VERSION; the model
it replaces is kept for rollback. Targets: edge=E, type=T, sensor=GLOB,
combined with commas, or * for every sensor of every edge. The most specific
target that matches a sensor wins on the edge.`,
		Example: `  sm-collector models promote pump7@20261126.101500 --target "sensor=site1/pump7/*"
  sm-collector models promote vib@3 --target type=vibration`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, version, err := parseModelRef(args[0])
			if err != nil {
				return err
			}
			t, err := mm.ParseTarget(target)
			if err != nil {
				return err
			}
			reg, pool, err := rf.open(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			ref, err := reg.Promote(ctx, t, name, version)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdio.Err, "%s now runs %s\n", t.Key(), ref.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "target key (edge=E,type=T,sensor=GLOB, or *)")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

func newModelsRollbackCmd(stdio IO, rf *registryFlags) *cobra.Command {
	var target string
	cmd := &cobra.Command{
		Use:     "rollback",
		Short:   "Put a target back on the model it ran before",
		Example: `  sm-collector models rollback --target type=vibration`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			t, err := mm.ParseTarget(target)
			if err != nil {
				return err
			}
			reg, pool, err := rf.open(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			now, removed, err := reg.Rollback(ctx, t)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdio.Err, "%s rolled back from %s to %s\n", t.Key(), removed.ID(), now.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "target key (edge=E,type=T,sensor=GLOB, or *)")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}
