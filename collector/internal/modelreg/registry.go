// Package modelreg is the collector's model registry: it publishes signed
// model artifacts to an object store (an S3 bucket or a local directory,
// shared/objstore) under content-addressed keys, keeps the manifest
// that tells every edge which model to run (see FORMAT.md), and records
// each model and every promotion in PostgreSQL.
//
// Writes follow S3's semantics (which objstore.Dir gives too): the artifact is written first and the
// manifest last, so an edge that sees a manifest can always fetch what it
// names. Manifest rewrites are serialised by a PostgreSQL advisory lock
// and, where the server supports it, by a conditional PUT on the ETag.
package modelreg

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/objstore"
)

// Errors callers can test for.
var (
	// ErrNotFound means the model (name, version) is not in the registry.
	ErrNotFound = errors.New("model not found")
	// ErrConflict means (name, version) is already published with other bytes.
	ErrConflict = errors.New("model version already published with different content")
	// ErrInvalid means the request itself is wrong.
	ErrInvalid = errors.New("invalid model request")
)

// Options configures a Registry.
type Options struct {
	// Prefix is prepended to every key ("" or ending in "/"; a missing
	// slash is added).
	Prefix string
	// Logger gets lifecycle messages; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Registry publishes and promotes models. It is safe for concurrent use
// and across collector processes sharing the database and store.
type Registry struct {
	store  objstore.Store
	db     *pgxpool.Pool
	prefix string
	log    *slog.Logger
	now    func() time.Time
}

// Model is one registry row.
type Model struct {
	Name    string
	Version string
	Kind    string
	SHA256  string
	Size    int64
	Key     string
	Created time.Time
	// State is "published" (never active), "active" (active for at
	// least one target) or "retired" (was active, no longer is).
	State string
	// Targets lists the target keys this model is active for.
	Targets []string
	// Metrics are the artifact's evaluation figures (e.g. train_alarm_rate).
	Metrics map[string]float64
	// Training is the artifact's whole training record (window, rows,
	// source, metrics) as JSON.
	Training json.RawMessage
}

// New returns a registry over an object store (objstore.S3 with a
// path-style client for non-AWS servers, or objstore.Dir) and a
// PostgreSQL pool. Call Init once before use.
func New(store objstore.Store, pool *pgxpool.Pool, o Options) (*Registry, error) {
	if store == nil || pool == nil {
		return nil, fmt.Errorf("modelreg: object store and database pool are required: %w", ErrInvalid)
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Registry{store: store, db: pool, prefix: o.Prefix,
		log: o.Logger.With("component", "modelreg"), now: o.Now}, nil
}

// schemaSQL creates the registry tables. It lives here rather than in the
// store's migrations because the store's migration list was not open to
// other packages when this was written; it is idempotent and cheap.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS models (
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    version    text NOT NULL CHECK (length(version) BETWEEN 1 AND 128),
    kind       text NOT NULL DEFAULT '',
    sha256     text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size       bigint NOT NULL CHECK (size > 0),
    key        text NOT NULL,
    created    timestamptz NOT NULL DEFAULT now(),
    state      text NOT NULL DEFAULT 'published' CHECK (state IN ('published', 'active', 'retired')),
    targets    text[] NOT NULL DEFAULT '{}',
    metrics    jsonb NOT NULL DEFAULT '{}',
    training   jsonb,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS model_events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    action   text NOT NULL CHECK (action IN ('publish', 'promote', 'rollback')),
    target   text NOT NULL DEFAULT '',
    name     text NOT NULL,
    version  text NOT NULL,
    detail   text NOT NULL DEFAULT ''
);
`

// manifestLock is the advisory-lock key that serialises manifest
// rewrites across collector processes.
const manifestLock = "smartmaint.modelreg.manifest"

// Init creates the registry tables if they do not exist.
func (r *Registry) Init(ctx context.Context) error {
	if _, err := r.db.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("cannot create model registry tables: %w", err)
	}
	return nil
}

// ManifestKey is the manifest's full object key.
func (r *Registry) ManifestKey() string { return r.prefix + mm.ManifestKey }

// Publish verifies a signed artifact against trusted (the registry will
// not publish what no edge would accept), uploads it under its content
// address (skipping the upload when that object already exists) and
// records it. It does not promote: edges see the model only after Promote.
// Publishing the same bytes again is a no-op; other bytes under the same
// name and version are refused with ErrConflict.
func (r *Registry) Publish(ctx context.Context, data []byte, trusted []ed25519.PublicKey) (Model, error) {
	am, _, err := artifact.Decode(data, trusted)
	if err != nil {
		return Model{}, fmt.Errorf("publish: %w", err)
	}
	if _, err := models.FromArtifact(am); err != nil {
		return Model{}, fmt.Errorf("publish: %w", err)
	}
	training, err := json.Marshal(am.Training)
	if err != nil {
		return Model{}, fmt.Errorf("publish %s: %w", am.Ref(), err)
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	key := mm.ArtifactKey(r.prefix, sha)
	m := Model{Name: am.Name, Version: am.Version, Kind: am.Kind, SHA256: sha,
		Size: int64(len(data)), Key: key, State: "published", Metrics: am.Training.Metrics, Training: training}
	if m.Metrics == nil {
		m.Metrics = map[string]float64{}
	}

	var have string
	err = r.db.QueryRow(ctx, `SELECT sha256 FROM models WHERE name = $1 AND version = $2`, m.Name, m.Version).Scan(&have)
	switch {
	case err == nil && have != sha:
		return Model{}, fmt.Errorf("publish %s@%s: registered with sha256 %s, this artifact is %s: %w", m.Name, m.Version, have, sha, ErrConflict)
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return Model{}, fmt.Errorf("publish %s@%s: %w", m.Name, m.Version, err)
	}

	// Artifact first: nothing refers to it until the manifest does.
	exists, err := r.objectExists(ctx, key)
	if err != nil {
		return Model{}, err
	}
	if !exists {
		if err := r.store.Put(ctx, key, data, objstore.PutOptions{ContentType: "application/octet-stream"}); err != nil {
			return Model{}, fmt.Errorf("cannot upload artifact: %w", err)
		}
	}

	err = pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO models (name, version, kind, sha256, size, key, created, metrics, training)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT (name, version) DO NOTHING`,
			m.Name, m.Version, m.Kind, m.SHA256, m.Size, m.Key, r.now().UTC(), m.Metrics, string(training))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			// Already there (a retry, or a concurrent publish): same bytes
			// is fine, different bytes is a conflict.
			if err := tx.QueryRow(ctx, `SELECT sha256, created, state, targets FROM models WHERE name = $1 AND version = $2`,
				m.Name, m.Version).Scan(&have, &m.Created, &m.State, &m.Targets); err != nil {
				return err
			}
			if have != sha {
				return fmt.Errorf("registered with sha256 %s, this artifact is %s: %w", have, sha, ErrConflict)
			}
			return nil
		}
		if err := tx.QueryRow(ctx, `SELECT created, targets FROM models WHERE name = $1 AND version = $2`,
			m.Name, m.Version).Scan(&m.Created, &m.Targets); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO model_events (at, action, name, version, detail) VALUES ($1, 'publish', $2, $3, $4)`,
			r.now().UTC(), m.Name, m.Version, sha)
		return err
	})
	if err != nil {
		return Model{}, fmt.Errorf("cannot record %s@%s in the model registry: %w", m.Name, m.Version, err)
	}
	r.log.Info("model published", "model", m.Name+"@"+m.Version, "sha256", sha, "size", m.Size)
	return m, nil
}

// Get returns one model.
func (r *Registry) Get(ctx context.Context, name, version string) (Model, error) {
	ms, err := r.list(ctx, `WHERE name = $1 AND version = $2`, name, version)
	if err != nil {
		return Model{}, err
	}
	if len(ms) == 0 {
		return Model{}, fmt.Errorf("%s@%s: %w", name, version, ErrNotFound)
	}
	return ms[0], nil
}

// List returns every model, newest first within each name.
func (r *Registry) List(ctx context.Context) ([]Model, error) {
	return r.list(ctx, "")
}

func (r *Registry) list(ctx context.Context, where string, args ...any) ([]Model, error) {
	rows, err := r.db.Query(ctx, `SELECT name, version, kind, sha256, size, key, created, state, targets, metrics, training
		FROM models `+where+` ORDER BY name, created DESC, version DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot list models: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Model, error) {
		var m Model
		var training []byte
		err := row.Scan(&m.Name, &m.Version, &m.Kind, &m.SHA256, &m.Size, &m.Key, &m.Created, &m.State, &m.Targets, &m.Metrics, &training)
		if training != nil {
			m.Training = json.RawMessage(training)
		}
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list models: %w", err)
	}
	return ms, nil
}

// Manifest reads the current manifest; a store without one gives an
// empty manifest.
func (r *Registry) Manifest(ctx context.Context) (*mm.Manifest, error) {
	m, _, err := r.readManifest(ctx)
	return m, err
}

// Promote makes name@version the active model for target and rewrites
// the manifest. The model's artifact must already be published.
func (r *Registry) Promote(ctx context.Context, target mm.Target, name, version string) (mm.Ref, error) {
	model, err := r.Get(ctx, name, version)
	if err != nil {
		return mm.Ref{}, err
	}
	ref := mm.Ref{Name: model.Name, Version: model.Version, Kind: model.Kind, Key: model.Key,
		SHA256: model.SHA256, Size: model.Size, Promoted: r.now().UTC().Truncate(time.Millisecond)}
	err = r.editManifest(ctx, func(m *mm.Manifest) (string, string, error) {
		if !m.Promote(target, ref) {
			return "", "", nil
		}
		return "promote", ref.ID(), nil
	}, target, model.Name, model.Version)
	if err != nil {
		return mm.Ref{}, fmt.Errorf("promote %s for %s: %w", ref.ID(), target.Key(), err)
	}
	r.log.Info("model promoted", "model", ref.ID(), "target", target.Key())
	return ref, nil
}

// Rollback makes the previous model of target active again and returns
// the ref now active and the one removed.
func (r *Registry) Rollback(ctx context.Context, target mm.Target) (now, removed mm.Ref, err error) {
	err = r.editManifest(ctx, func(m *mm.Manifest) (string, string, error) {
		var e error
		now, removed, e = m.Rollback(target)
		if e != nil {
			return "", "", e
		}
		return "rollback", "removed " + removed.ID(), nil
	}, target, "", "")
	if err != nil {
		return mm.Ref{}, mm.Ref{}, fmt.Errorf("rollback %s: %w", target.Key(), err)
	}
	r.log.Info("model rolled back", "target", target.Key(), "active", now.ID(), "removed", removed.ID())
	return now, removed, nil
}

// editManifest runs one read-modify-write of the manifest under the
// advisory lock, then brings the registry's state columns in line with
// it and records the event, all in one transaction. edit returns the
// action name and detail ("" action: nothing changed, nothing written).
func (r *Registry) editManifest(ctx context.Context, edit func(*mm.Manifest) (string, string, error), target mm.Target, name, version string) error {
	return pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, manifestLock); err != nil {
			return fmt.Errorf("lock manifest: %w", err)
		}
		m, etag, err := r.readManifest(ctx)
		if err != nil {
			return err
		}
		action, detail, err := edit(m)
		if err != nil || action == "" {
			return err
		}
		if action == "rollback" {
			e, _ := m.Find(target)
			name, version = e.Active.Name, e.Active.Version
		}
		m.Generation++
		m.Updated = r.now().UTC().Truncate(time.Millisecond)
		if err := r.writeManifest(ctx, m, etag); err != nil {
			return err
		}
		// The manifest is the truth for edges; the table mirrors it.
		if err := syncStates(ctx, tx, m); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO model_events (at, action, target, name, version, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
			r.now().UTC(), action, target.Key(), name, version, detail)
		return err
	})
}

func syncStates(ctx context.Context, tx pgx.Tx, m *mm.Manifest) error {
	type nv struct {
		name    string
		version string
	}
	active := map[nv][]string{}
	for _, e := range m.Entries {
		k := nv{e.Active.Name, e.Active.Version}
		active[k] = append(active[k], e.Target.Key())
	}
	if _, err := tx.Exec(ctx, `UPDATE models SET state = 'retired', targets = '{}' WHERE state = 'active'`); err != nil {
		return fmt.Errorf("update model states: %w", err)
	}
	for k, targets := range active {
		if _, err := tx.Exec(ctx, `UPDATE models SET state = 'active', targets = $3 WHERE name = $1 AND version = $2`,
			k.name, k.version, targets); err != nil {
			return fmt.Errorf("update model states: %w", err)
		}
	}
	return nil
}

func (r *Registry) readManifest(ctx context.Context) (*mm.Manifest, string, error) {
	obj, err := r.store.Get(ctx, r.ManifestKey(), "", mm.MaxSize)
	if errors.Is(err, objstore.ErrNotFound) {
		return mm.New(), "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("cannot read manifest: %w", err)
	}
	m, err := mm.Parse(obj.Data)
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s: %w", r.store.Location(r.ManifestKey()), err)
	}
	return m, obj.ETag, nil
}

func (r *Registry) writeManifest(ctx context.Context, m *mm.Manifest, etag string) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	// Edges must revalidate every poll; the ETag makes that cheap.
	o := objstore.PutOptions{ContentType: "application/json", CacheControl: "no-cache"}
	// Compare-and-swap where the store honours it; the advisory lock
	// already serialises writers that share the database.
	if etag != "" {
		o.IfMatch = etag
	} else {
		o.IfNoneMatch = "*"
	}
	if err := r.store.Put(ctx, r.ManifestKey(), data, o); err != nil {
		return fmt.Errorf("cannot write manifest (someone else may have changed it; retry): %w", err)
	}
	return nil
}

func (r *Registry) objectExists(ctx context.Context, key string) (bool, error) {
	ok, err := r.store.Exists(ctx, key)
	if err != nil {
		return false, fmt.Errorf("cannot check artifact: %w", err)
	}
	return ok, nil
}
