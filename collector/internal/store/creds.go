package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Secret prefixes make a leaked secret recognisable (secret scanners, logs
// review) and tell Authenticate which table to look in.
const (
	EdgeTokenPrefix = "sme_"
	APIKeyPrefix    = "smk_"
)

// secretBytes is the entropy of every secret: 256 bits.
const secretBytes = 32

// secretLen is the length of a secret: prefix + unpadded base64url.
const secretLen = 4 + 43

// newSecret returns prefix + 32 random bytes in unpadded base64url, and its
// SHA-256 hash (the only thing stored).
func newSecret(prefix string) (string, [32]byte, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", [32]byte{}, fmt.Errorf("cannot read random bytes: %w", err)
	}
	s := prefix + base64.RawURLEncoding.EncodeToString(b)
	return s, sha256.Sum256([]byte(s)), nil
}

// ValidEdgeID reports whether id can name an edge: 1–64 characters of
// letters, digits, '.', '_' and '-', starting with a letter or digit.
func ValidEdgeID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// RegisterEdge creates an edge whose id is name and returns it with its
// token. The token is shown only here; the store keeps its SHA-256 hash.
func (db *DB) RegisterEdge(ctx context.Context, name string) (Edge, string, error) {
	if !ValidEdgeID(name) {
		return Edge{}, "", fmt.Errorf("%w: edge name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, name)
	}
	token, hash, err := newSecret(EdgeTokenPrefix)
	if err != nil {
		return Edge{}, "", err
	}
	e := Edge{ID: name, Name: name}
	err = db.pool.QueryRow(ctx, `INSERT INTO edges (id, name, token_hash) VALUES ($1, $2, $3) RETURNING created_at`,
		name, name, hash[:]).Scan(&e.CreatedAt)
	if err != nil {
		if isUniqueViolation(err) {
			return Edge{}, "", fmt.Errorf("edge %q: %w", name, ErrConflict)
		}
		return Edge{}, "", fmt.Errorf("cannot register edge %q: %w", name, err)
	}
	return e, token, nil
}

// CreateAPIKey creates an API key with a role and returns it with its
// secret, which is shown only here.
func (db *DB) CreateAPIKey(ctx context.Context, name string, role Role) (APIKey, string, error) {
	if !role.Valid() {
		return APIKey{}, "", fmt.Errorf("%w: role %q (want viewer, operator or admin)", ErrInvalid, role)
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 {
		return APIKey{}, "", fmt.Errorf("%w: API key name must have 1-128 characters", ErrInvalid)
	}
	secret, hash, err := newSecret(APIKeyPrefix)
	if err != nil {
		return APIKey{}, "", err
	}
	k := APIKey{Name: name, Role: role}
	err = db.pool.QueryRow(ctx, `INSERT INTO api_keys (name, role, key_hash) VALUES ($1, $2, $3) RETURNING id, created_at`,
		name, string(role), hash[:]).Scan(&k.ID, &k.CreatedAt)
	if err != nil {
		return APIKey{}, "", fmt.Errorf("cannot create API key %q: %w", name, err)
	}
	return k, secret, nil
}

// ListAPIKeys returns all keys, revoked ones included, oldest first.
func (db *DB) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("cannot list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) {
		var k APIKey
		var role string
		var revoked *time.Time
		err := r.Scan(&k.ID, &k.Name, &role, &k.CreatedAt, &revoked)
		k.Role = Role(role)
		if revoked != nil {
			k.RevokedAt = *revoked
		}
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list API keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey revokes a key; ErrNotFound when there is no such active key.
func (db *DB) RevokeAPIKey(ctx context.Context, id int64) error {
	tag, err := db.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return fmt.Errorf("cannot revoke API key %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("API key %d: %w", id, ErrNotFound)
	}
	return nil
}

// RevokeEdge revokes an edge's token; ErrNotFound when there is no such
// active edge.
func (db *DB) RevokeEdge(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `UPDATE edges SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return fmt.Errorf("cannot revoke edge %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("edge %q: %w", id, ErrNotFound)
	}
	return nil
}

// Authenticate resolves a bearer secret to its principal. Unknown,
// malformed and revoked secrets all give ErrUnauthenticated, without
// saying which. The secret is hashed before it reaches the database, and
// the stored hash is compared in constant time, so timing reveals nothing
// about the secret.
func (db *DB) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) != secretLen {
		return Principal{}, ErrUnauthenticated
	}
	hash := sha256.Sum256([]byte(secret))
	var (
		p       Principal
		stored  []byte
		revoked *time.Time
		err     error
	)
	switch {
	case strings.HasPrefix(secret, EdgeTokenPrefix):
		var num int32
		err = db.pool.QueryRow(ctx, `SELECT num, id, name, token_hash, revoked_at FROM edges WHERE token_hash = $1`, hash[:]).
			Scan(&num, &p.EdgeID, &p.Name, &stored, &revoked)
		p.Kind, p.ID, p.Role = PrincipalEdge, int64(num), RoleEdge
	case strings.HasPrefix(secret, APIKeyPrefix):
		var role string
		err = db.pool.QueryRow(ctx, `SELECT id, name, role, key_hash, revoked_at FROM api_keys WHERE key_hash = $1`, hash[:]).
			Scan(&p.ID, &p.Name, &role, &stored, &revoked)
		p.Kind, p.Role = PrincipalAPIKey, Role(role)
	default:
		return Principal{}, ErrUnauthenticated
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("cannot look up credential: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hash[:]) != 1 || revoked != nil {
		return Principal{}, ErrUnauthenticated
	}
	return p, nil
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
