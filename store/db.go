package store

// The embedded database: <dataDir>/onramp.db, SQLite (modernc.org/sqlite,
// pure Go) in WAL mode. See https://www.sqlite.org/wal.html and
// https://www.sqlite.org/fileformat.html for the header checked below.
//
// Safety rules kept here:
//   - one process at a time: an exclusive flock(2) on onramp.db.lock is held
//     for as long as the DB is open (released by the kernel on kill -9);
//   - a file that is not ours (foreign SQLite, corrupt, anything else) is an
//     error naming the file, and nothing is written to it;
//   - the schema is versioned with PRAGMA user_version; migrations run in one
//     transaction each, and a file from a newer Onramp is refused.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DBFile is the database's name in the data directory.
const DBFile = "onramp.db"

// appID is written to the SQLite header (PRAGMA application_id) so a foreign
// SQLite file is told apart from ours: "ONRP".
const appID = 0x4f4e5250

var (
	// ErrInUse means another Onramp process has the database open.
	ErrInUse = errors.New("the database is in use by another Onramp")
	// ErrForeign means the file is not an Onramp database (or is corrupt).
	ErrForeign = errors.New("not an Onramp database")
	// ErrTooNew means the database was written by a newer Onramp.
	ErrTooNew = errors.New("the database was written by a newer Onramp")
)

// migrations[i] brings the schema from version i to i+1. Append only; never
// edit a released migration.
var migrations = []string{
	// 1: vault metadata, encrypted secrets, audit trail.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;
CREATE TABLE secrets (
	name       TEXT PRIMARY KEY,
	value      BLOB NOT NULL, -- age ciphertext of name NUL value, to the vault's X25519 recipient
	updated_at TEXT NOT NULL
) STRICT;
CREATE TABLE audit (
	seq     INTEGER PRIMARY KEY,
	time    TEXT NOT NULL,
	actor   TEXT NOT NULL,
	action  TEXT NOT NULL,
	subject TEXT NOT NULL,
	detail  TEXT NOT NULL,
	prev    BLOB NOT NULL,
	hash    BLOB NOT NULL
) STRICT;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
	BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
	BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
`,
}

// DB is the open database. Its methods are safe for concurrent use.
type DB struct {
	path string
	sql  *sql.DB
	lock *os.File
}

// sqliteHeader starts every SQLite 3 database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// Open opens (creating if needed) <dataDir>/onramp.db and brings its schema
// up to date.
func Open(ctx context.Context, dataDir string) (*DB, error) {
	path := filepath.Join(dataDir, DBFile)
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("open %s: %w (close the other Onramp first)", path, ErrInUse)
		}
		return nil, fmt.Errorf("open %s: lock: %w", path, err)
	}
	db, err := open(ctx, path)
	if err != nil {
		lock.Close() // releases the flock
		return nil, err
	}
	db.lock = lock
	return db, nil
}

func open(ctx context.Context, path string) (*DB, error) {
	if err := checkHeader(path); err != nil {
		return nil, err
	}
	// Create the file ourselves so it is owner-only; SQLite gives the -wal
	// and -shm files the main file's mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	} else {
		f.Close()
	}
	// Connection-scoped settings go in the DSN so every (re)opened
	// connection has them. journal_mode is persistent and is set below, only
	// once the file is known to be ours.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "secure_delete(1)") // overwrite freed pages: no stale ciphertext lingers
	q.Set("_txlock", "immediate")
	s, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: writes are serialised, and reads see every committed
	// write. Onramp's traffic is a handful of rows.
	s.SetMaxOpenConns(1)
	s.SetMaxIdleConns(1)
	s.SetConnMaxLifetime(0)
	db := &DB{path: path, sql: s}
	if err := db.init(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return db, nil
}

// checkHeader refuses a non-empty file that is not SQLite before the driver
// touches it. (SQLite itself would refuse too, but only at the first query
// and with a bare "file is not a database".)
func checkHeader(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	n, err := io.ReadFull(f, head)
	if n == 0 && (err == io.EOF) {
		return nil // empty file: SQLite treats it as a new database
	}
	if err != nil || !bytes.Equal(head, sqliteHeader) {
		return foreign(path, "it is not an SQLite database")
	}
	return nil
}

func foreign(path, why string) error {
	return fmt.Errorf("open %s: %w: %s; move it aside to start afresh (it was not changed)", path, ErrForeign, why)
}

func (db *DB) init(ctx context.Context) error {
	var id, version int
	if err := db.sql.QueryRowContext(ctx, "PRAGMA application_id").Scan(&id); err != nil {
		return foreign(db.path, "it cannot be read ("+err.Error()+")")
	}
	if err := db.sql.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return foreign(db.path, "it cannot be read ("+err.Error()+")")
	}
	var tables int
	if err := db.sql.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return foreign(db.path, "it cannot be read ("+err.Error()+")")
	}
	switch {
	case id == 0 && version == 0 && tables == 0:
		// new (or empty) database: ours to initialise
	case id != appID:
		return foreign(db.path, fmt.Sprintf("it belongs to another program (application id %#x)", id))
	case version > len(migrations):
		return fmt.Errorf("open %s: %w (schema %d, this build knows up to %d): update Onramp", db.path, ErrTooNew, version, len(migrations))
	}
	if id == appID {
		var res string
		if err := db.sql.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil || res != "ok" {
			if err != nil {
				res = err.Error()
			}
			return fmt.Errorf("open %s: the database is corrupt (%s); move it aside and restore a backup (it was not changed)", db.path, res)
		}
	}
	var mode string
	if err := db.sql.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("open %s: set WAL mode: %w", db.path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("open %s: journal mode is %q, want wal", db.path, mode)
	}
	for v := version; v < len(migrations); v++ {
		if err := db.migrate(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) migrate(ctx context.Context, from int) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s to schema %d: %w", db.path, from+1, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, migrations[from]); err != nil {
		return fmt.Errorf("migrate %s to schema %d: %w", db.path, from+1, err)
	}
	// PRAGMAs take no parameters; both values are integers we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d", appID, from+1)); err != nil {
		return fmt.Errorf("migrate %s to schema %d: %w", db.path, from+1, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s to schema %d: %w", db.path, from+1, err)
	}
	return nil
}

// Path is the database file's path.
func (db *DB) Path() string { return db.path }

// SchemaVersion is the schema's current version.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := db.sql.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// Close checkpoints the WAL, closes the database and releases the lock.
func (db *DB) Close() error {
	// Fold the WAL back into the main file so a closed DB is one file.
	_, _ = db.sql.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	err := db.sql.Close()
	if db.lock != nil {
		db.lock.Close()
	}
	if err != nil {
		return fmt.Errorf("close %s: %w", db.path, err)
	}
	return nil
}

// tx runs fn in a write transaction and commits it.
func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
