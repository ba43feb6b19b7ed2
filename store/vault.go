package store

// Secrets at rest, with age (https://age-encryption.org/v1):
//
//   - Create draws a random X25519 identity. Every secret value is age-
//     encrypted to its recipient (the public key, stored in clear).
//   - The identity itself is stored age-encrypted with an scrypt passphrase
//     recipient. Unlock decrypts it into memory; Lock drops it.
//   - ChangePassphrase rewraps the identity only (one row, one transaction);
//     the secrets are untouched.
//
// A secret's plaintext is "name NUL value", so a ciphertext moved to another
// row is refused rather than read as the wrong secret. Nothing secret is
// written in plaintext and nothing secret appears in an error or the audit
// trail.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"filippo.io/age"
)

var (
	// ErrNoVault: Create has not been called on this database.
	ErrNoVault = errors.New("no vault yet: create one")
	// ErrVaultExists: Create on a database that has a vault.
	ErrVaultExists = errors.New("a vault already exists")
	// ErrLocked: the vault must be unlocked for this.
	ErrLocked = errors.New("the vault is locked")
	// ErrWrongPassphrase: Unlock or ChangePassphrase with the wrong passphrase.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrTooManyAttempts: wrong passphrases in a row; wait before trying again.
	ErrTooManyAttempts = errors.New("too many wrong passphrases")
	// ErrWeakPassphrase: Create or ChangePassphrase refused the new passphrase.
	ErrWeakPassphrase = errors.New("passphrase too weak")
	// ErrNotFound: no secret by that name.
	ErrNotFound = errors.New("no such secret")
	// ErrCorruptSecret: a stored value does not decrypt to its own name.
	ErrCorruptSecret = errors.New("stored secret is damaged")
)

// MinPassphraseLen is the shortest passphrase Create accepts.
const MinPassphraseLen = 12

const (
	metaIdentity  = "vault.identity"  // age scrypt ciphertext of the X25519 identity
	metaRecipient = "vault.recipient" // the identity's public key (not secret)
	// DefaultScryptWorkFactor is log2(N) for scrypt: about a second on a laptop.
	DefaultScryptWorkFactor = 18
	freeAttempts            = 3
	maxBackoff              = 5 * time.Minute
)

// VaultOptions tune a Vault; the zero value is production's.
type VaultOptions struct {
	// Actor is written in the audit trail for this process's actions.
	Actor string
	// ActorFunc, when set, names the actor at the time of each action
	// instead (the technician's name may change during a visit).
	ActorFunc func() string
	// ScryptWorkFactor: log2(N); tests lower it. 0 = DefaultScryptWorkFactor.
	ScryptWorkFactor int
	// Now is the clock (backoff, audit times). nil = time.Now.
	Now func() time.Time
}

// Vault holds the secrets. Its methods are safe for concurrent use.
type Vault struct {
	db   *DB
	opts VaultOptions

	mu        sync.Mutex
	id        *age.X25519Identity // nil while locked
	recipient *age.X25519Recipient
	failures  int       // wrong passphrases in a row
	retryAt   time.Time // no attempt accepted before this
}

// actor is who the audit trail records for an action now.
func (v *Vault) actor() string {
	if v.opts.ActorFunc != nil {
		if a := v.opts.ActorFunc(); a != "" {
			return a
		}
	}
	return v.opts.Actor
}

// NewVault returns the vault in db, locked.
func NewVault(db *DB, opts VaultOptions) *Vault {
	if opts.Actor == "" {
		opts.Actor = "onramp"
	}
	if opts.ScryptWorkFactor == 0 {
		opts.ScryptWorkFactor = DefaultScryptWorkFactor
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Vault{db: db, opts: opts}
}

// CheckPassphrase says why a new passphrase is refused, or nil. The rules
// are the floor, not a strength meter: at least MinPassphraseLen characters,
// not blank, not one or two characters repeated, not a well-known password.
func CheckPassphrase(p string) error {
	if !utf8.ValidString(p) {
		return fmt.Errorf("%w: it is not valid text", ErrWeakPassphrase)
	}
	if strings.TrimSpace(p) == "" {
		return fmt.Errorf("%w: it is empty", ErrWeakPassphrase)
	}
	if n := utf8.RuneCountInString(p); n < MinPassphraseLen {
		return fmt.Errorf("%w: use at least %d characters (this has %d)", ErrWeakPassphrase, MinPassphraseLen, n)
	}
	if len(p) > 1024 {
		return fmt.Errorf("%w: use at most 1024 bytes", ErrWeakPassphrase)
	}
	distinct := map[rune]bool{}
	for _, r := range strings.ToLower(p) {
		if !unicode.IsSpace(r) {
			distinct[r] = true
		}
	}
	if len(distinct) < 5 {
		return fmt.Errorf("%w: it repeats too few different characters", ErrWeakPassphrase)
	}
	lower := strings.ToLower(p)
	for _, w := range []string{"password", "passphrase", "123456", "qwerty", "azerty", "abcdef", "letmein", "onramp", "talos", "secret", "admin"} {
		if strings.Contains(lower, w) && len(strings.ReplaceAll(lower, w, "")) < MinPassphraseLen-4 {
			return fmt.Errorf("%w: it is mostly a well-known word (%q)", ErrWeakPassphrase, w)
		}
	}
	if isSequence(lower) {
		return fmt.Errorf("%w: it is a keyboard or number sequence", ErrWeakPassphrase)
	}
	return nil
}

func isSequence(s string) bool {
	rs := []rune(s)
	up, down := true, true
	for i := 1; i < len(rs); i++ {
		up = up && rs[i] == rs[i-1]+1
		down = down && rs[i] == rs[i-1]-1
	}
	return up || down
}

// Exists reports whether the database holds a vault.
func (v *Vault) Exists(ctx context.Context) (bool, error) {
	var n int
	if err := v.db.sql.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key = ?", metaIdentity).Scan(&n); err != nil {
		return false, fmt.Errorf("read vault: %w", err)
	}
	return n > 0, nil
}

// Unlocked reports whether the keys are in memory.
func (v *Vault) Unlocked() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.id != nil
}

func (v *Vault) audit(ctx context.Context, tx *sql.Tx, action, subject, detail string) error {
	return appendAudit(ctx, tx, Event{Time: v.opts.Now(), Actor: v.actor(), Action: action, Subject: subject, Detail: detail})
}

func (v *Vault) wrap(id *age.X25519Identity, passphrase string) ([]byte, error) {
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, err
	}
	r.SetWorkFactor(v.opts.ScryptWorkFactor)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, id.String()); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Create makes the vault and leaves it unlocked.
func (v *Vault) Create(ctx context.Context, passphrase string) error {
	if err := CheckPassphrase(passphrase); err != nil {
		return fmt.Errorf("create vault: %w", err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return fmt.Errorf("create vault: %w", err)
	}
	wrapped, err := v.wrap(id, passphrase)
	if err != nil {
		return fmt.Errorf("create vault: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	err = v.db.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key = ?", metaIdentity).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrVaultExists
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)",
			metaIdentity, wrapped, metaRecipient, []byte(id.Recipient().String())); err != nil {
			return err
		}
		return v.audit(ctx, tx, "vault.create", "", "vault created; secrets are encrypted with age (X25519), the key wrapped with the passphrase (scrypt)")
	})
	if err != nil {
		return fmt.Errorf("create vault: %w", err)
	}
	v.id, v.recipient = id, id.Recipient()
	v.failures, v.retryAt = 0, time.Time{}
	return nil
}

// unwrapLocked decrypts the stored identity with passphrase, applying the
// backoff. v.mu is held.
func (v *Vault) unwrapLocked(ctx context.Context, passphrase string) (*age.X25519Identity, error) {
	now := v.opts.Now()
	if now.Before(v.retryAt) {
		wait := v.retryAt.Sub(now).Round(time.Second)
		if wait < time.Second {
			wait = time.Second
		}
		return nil, fmt.Errorf("%w: try again in %s", ErrTooManyAttempts, wait)
	}
	var wrapped, rcpt []byte
	err := v.db.sql.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaIdentity).Scan(&wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoVault
	}
	if err != nil {
		return nil, err
	}
	if err := v.db.sql.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaRecipient).Scan(&rcpt); err != nil {
		return nil, fmt.Errorf("read vault recipient: %w", err)
	}
	sid, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, err
	}
	// Accept what we write, with headroom; refuse absurd work factors a
	// tampered file could ask for.
	sid.SetMaxWorkFactor(max(v.opts.ScryptWorkFactor, 22))
	r, err := age.Decrypt(bytes.NewReader(wrapped), sid)
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		v.failures++
		if v.failures >= freeAttempts {
			d := min(time.Second<<(v.failures-freeAttempts), maxBackoff)
			v.retryAt = now.Add(d)
		}
		_ = v.db.Record(ctx, Event{Time: now, Actor: v.actor(), Action: "vault.unlock.failed", Detail: fmt.Sprintf("wrong passphrase (%d in a row)", v.failures)})
		return nil, ErrWrongPassphrase
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the wrapped key cannot be read", ErrCorruptSecret)
	}
	text, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: the wrapped key cannot be read", ErrCorruptSecret)
	}
	id, err := age.ParseX25519Identity(string(text))
	if err != nil || id.Recipient().String() != string(rcpt) {
		return nil, fmt.Errorf("%w: the wrapped key does not match the vault", ErrCorruptSecret)
	}
	v.failures, v.retryAt = 0, time.Time{}
	return id, nil
}

// Unlock loads the keys into memory.
func (v *Vault) Unlock(ctx context.Context, passphrase string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	id, err := v.unwrapLocked(ctx, passphrase)
	if err != nil {
		return fmt.Errorf("unlock vault: %w", err)
	}
	if err := v.db.Record(ctx, Event{Time: v.opts.Now(), Actor: v.actor(), Action: "vault.unlock"}); err != nil {
		return fmt.Errorf("unlock vault: %w", err)
	}
	v.id, v.recipient = id, id.Recipient()
	return nil
}

// Lock drops the keys from memory. (Go cannot guarantee the bytes are
// wiped; the references are dropped so the garbage collector reclaims them.)
func (v *Vault) Lock(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.id == nil {
		return nil
	}
	v.id, v.recipient = nil, nil
	if err := v.db.Record(ctx, Event{Time: v.opts.Now(), Actor: v.actor(), Action: "vault.lock"}); err != nil {
		return fmt.Errorf("lock vault: %w", err)
	}
	return nil
}

// ChangePassphrase rewraps the identity with newPass, in one transaction.
// The old passphrase is required even while unlocked.
func (v *Vault) ChangePassphrase(ctx context.Context, oldPass, newPass string) error {
	if err := CheckPassphrase(newPass); err != nil {
		return fmt.Errorf("change passphrase: new passphrase: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	id, err := v.unwrapLocked(ctx, oldPass)
	if err != nil {
		return fmt.Errorf("change passphrase: %w", err)
	}
	wrapped, err := v.wrap(id, newPass)
	if err != nil {
		return fmt.Errorf("change passphrase: %w", err)
	}
	err = v.db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE key = ?", wrapped, metaIdentity); err != nil {
			return err
		}
		return v.audit(ctx, tx, "vault.passphrase", "", "passphrase changed")
	})
	if err != nil {
		return fmt.Errorf("change passphrase: %w", err)
	}
	return nil
}

func (v *Vault) keysLocked() (*age.X25519Identity, error) {
	if v.id == nil {
		return nil, ErrLocked
	}
	return v.id, nil
}

// Put stores value under name (replacing any), encrypted, and records the
// name (never the value) in the audit trail with detail.
func (v *Vault) Put(ctx context.Context, name string, value []byte, detail string) error {
	return v.PutMany(ctx, map[string][]byte{name: value}, detail)
}

// PutMany stores several secrets in one transaction.
func (v *Vault) PutMany(ctx context.Context, values map[string][]byte, detail string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, err := v.keysLocked(); err != nil {
		return fmt.Errorf("store secrets: %w", err)
	}
	enc := make(map[string][]byte, len(values))
	for name, value := range values {
		if name == "" || strings.ContainsRune(name, 0) {
			return fmt.Errorf("store secret %q: bad name", name)
		}
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, v.recipient)
		if err != nil {
			return fmt.Errorf("store secret %s: %w", name, err)
		}
		w.Write([]byte(name))
		w.Write([]byte{0})
		w.Write(value)
		if err := w.Close(); err != nil {
			return fmt.Errorf("store secret %s: %w", name, err)
		}
		enc[name] = buf.Bytes()
	}
	now := v.opts.Now().UTC().Format(time.RFC3339Nano)
	err := v.db.tx(ctx, func(tx *sql.Tx) error {
		for _, name := range slices.Sorted(maps.Keys(enc)) {
			c := enc[name]
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
				name, c, now); err != nil {
				return err
			}
			if err := v.audit(ctx, tx, "secret.put", name, detail); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store secrets: %w", err)
	}
	return nil
}

// Get decrypts the secret called name.
func (v *Vault) Get(ctx context.Context, name string) ([]byte, error) {
	v.mu.Lock()
	id, err := v.keysLocked()
	v.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	var c []byte
	err = v.db.sql.QueryRowContext(ctx, "SELECT value FROM secrets WHERE name = ?", name).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read secret %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	r, err := age.Decrypt(bytes.NewReader(c), id)
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, ErrCorruptSecret)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, ErrCorruptSecret)
	}
	prefix := append([]byte(name), 0)
	if !bytes.HasPrefix(plain, prefix) {
		return nil, fmt.Errorf("read secret %s: %w (it belongs to another name)", name, ErrCorruptSecret)
	}
	return plain[len(prefix):], nil
}

// Has reports whether a secret called name is stored. It works while
// locked: names are not secret.
func (v *Vault) Has(ctx context.Context, name string) (bool, error) {
	var n int
	if err := v.db.sql.QueryRowContext(ctx, "SELECT count(*) FROM secrets WHERE name = ?", name).Scan(&n); err != nil {
		return false, fmt.Errorf("look up secret %s: %w", name, err)
	}
	return n > 0, nil
}

// Names lists the stored secrets' names, sorted.
func (v *Vault) Names(ctx context.Context) ([]string, error) {
	rows, err := v.db.sql.QueryContext(ctx, "SELECT name FROM secrets ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Delete removes the secret called name (no error if absent). It needs the
// vault unlocked: a locked vault changes nothing.
func (v *Vault) Delete(ctx context.Context, name, detail string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, err := v.keysLocked(); err != nil {
		return fmt.Errorf("delete secret %s: %w", name, err)
	}
	err := v.db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM secrets WHERE name = ?", name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		return v.audit(ctx, tx, "secret.delete", name, detail)
	})
	if err != nil {
		return fmt.Errorf("delete secret %s: %w", name, err)
	}
	return nil
}
