package store

import (
	"bytes"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openT(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenCreatesAndReopens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.SchemaVersion(t.Context())
	if err != nil || v != len(migrations) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, len(migrations))
	}
	var mode string
	if err := db.sql.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	var busy int
	if err := db.sql.QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil || busy != 5000 {
		t.Fatalf("busy_timeout = %d, %v", busy, err)
	}
	if err := db.Record(t.Context(), Event{Actor: "test", Action: "test.hello"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{DBFile, DBFile + ".lock"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, st.Mode().Perm())
		}
	}
	db2 := openT(t, dir)
	events, err := db2.Audit(t.Context())
	if err != nil || len(events) != 1 || events[0].Action != "test.hello" {
		t.Fatalf("events after reopen = %+v, %v", events, err)
	}
}

func TestOpenTwiceIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := openT(t, dir)
	_, err := Open(t.Context(), dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), filepath.Join(dir, DBFile)) {
		t.Fatalf("second open: err = %v, want ErrInUse naming the file", err)
	}
	db.Close()
	db2, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	db2.Close()
}

// A file that is not ours is refused with its name, and left byte for byte.
func TestOpenRefusesForeignAndCorruptFiles(t *testing.T) {
	t.Parallel()
	// A genuine Onramp database to corrupt.
	good := t.TempDir()
	gdb, err := Open(t.Context(), good)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := gdb.Record(t.Context(), Event{Actor: "t", Action: "fill", Detail: strings.Repeat("x", i*40)}); err != nil {
			t.Fatal(err)
		}
	}
	gdb.Close()
	goodBytes, err := os.ReadFile(filepath.Join(good, DBFile))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		make  func(t *testing.T, path string)
		want  error
		words string
	}{
		{"text file", func(t *testing.T, p string) {
			os.WriteFile(p, []byte("cluster: stmary\nthis is not a database\n"), 0o600)
		}, ErrForeign, "not an SQLite database"},
		{"truncated header", func(t *testing.T, p string) {
			os.WriteFile(p, []byte("SQLite"), 0o600)
		}, ErrForeign, "not an SQLite database"},
		{"another program's SQLite", func(t *testing.T, p string) {
			s, err := sql.Open("sqlite", p)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Exec("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)"); err != nil {
				t.Fatal(err)
			}
		}, ErrForeign, "belongs to another program"},
		{"newer Onramp", func(t *testing.T, p string) {
			b := bytes.Clone(goodBytes)
			b[60], b[61], b[62], b[63] = 0, 0, 0, 99 // user_version, big-endian at offset 60
			os.WriteFile(p, b, 0o600)
		}, ErrTooNew, "update Onramp"},
		{"damaged pages", func(t *testing.T, p string) {
			b := bytes.Clone(goodBytes)
			for i := 100; i < len(b); i += 7 {
				b[i] ^= 0x5a
			}
			os.WriteFile(p, b, 0o600)
		}, nil, "move it aside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, DBFile)
			tt.make(t, p)
			before, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			db, err := Open(t.Context(), dir)
			if err == nil {
				db.Close()
				t.Fatal("opened a file that is not a valid Onramp database")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tt.words) {
				t.Errorf("err = %q, want the path %s and %q", err, p, tt.words)
			}
			after, _ := os.ReadFile(p)
			if !bytes.Equal(before, after) {
				t.Error("the refused file was modified")
			}
			// The lock was released: a retry gives the same answer, not "in use".
			if _, err2 := Open(t.Context(), dir); errors.Is(err2, ErrInUse) {
				t.Errorf("lock kept after a failed open: %v", err2)
			}
		})
	}
}

func TestAuditChain(t *testing.T) {
	t.Parallel()
	tamper := []struct {
		name  string
		sql   string
		words string
	}{
		{"edited detail", "UPDATE audit SET detail = 'nothing happened' WHERE seq = 2", "event 2 was edited"},
		{"edited actor", "UPDATE audit SET actor = 'someone else' WHERE seq = 1", "event 1 was edited"},
		{"deleted middle row", "DELETE FROM audit WHERE seq = 2", "event 2 is missing"},
		{"deleted last row", "DELETE FROM audit WHERE seq = 3", "ends at event 2"},
		{"deleted all rows", "DELETE FROM audit", "ends at event 0"},
		{"renumbered after delete", "DELETE FROM audit WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3", "does not follow"},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := openT(t, t.TempDir())
			ctx := t.Context()
			for _, a := range []string{"site.save", "secret.put", "vault.lock"} {
				if err := db.Record(ctx, Event{Actor: "technician", Action: a, Subject: "s", Detail: "d"}); err != nil {
					t.Fatal(err)
				}
			}
			seq, head, err := db.VerifyAudit(ctx)
			if err != nil || seq != 3 || len(head) != 64 {
				t.Fatalf("intact chain: seq=%d head=%q err=%v", seq, head, err)
			}
			// The table refuses changes through SQL...
			if _, err := db.sql.Exec(tt.sql); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("tamper without dropping the triggers: err = %v", err)
			}
			// ...but a file editor does not go through the triggers.
			if _, err := db.sql.Exec("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; " + tt.sql); err != nil {
				t.Fatal(err)
			}
			_, _, err = db.VerifyAudit(ctx)
			if !errors.Is(err, ErrAuditBroken) || !strings.Contains(err.Error(), tt.words) {
				t.Fatalf("VerifyAudit after %s: err = %v, want %q", tt.name, err, tt.words)
			}
		})
	}
}

func TestAuditHashCoversEveryField(t *testing.T) {
	t.Parallel()
	base := Event{Seq: 1, Actor: "a", Action: "b", Subject: "c", Detail: "d"}
	prev := make([]byte, 32)
	h := chainHash(prev, base)
	variants := []Event{
		{Seq: 2, Actor: "a", Action: "b", Subject: "c", Detail: "d"},
		{Seq: 1, Actor: "ab", Action: "", Subject: "c", Detail: "d"}, // field boundaries matter
		{Seq: 1, Actor: "a", Action: "b", Subject: "cd", Detail: ""},
		{Seq: 1, Actor: "a", Action: "b", Subject: "c", Detail: "e"},
	}
	for _, v := range variants {
		if bytes.Equal(chainHash(prev, v), h) {
			t.Errorf("hash of %+v equals hash of %+v", v, base)
		}
	}
	prev[0] = 1
	if bytes.Equal(chainHash(prev, base), h) {
		t.Error("hash does not cover the previous hash")
	}
}
