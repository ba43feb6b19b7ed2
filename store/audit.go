package store

// The audit trail (DESIGN step 8): an append-only table of events, each row
// hash-chained to the one before it:
//
//	hash_n = SHA-256("onramp-audit-v1" ‖ hash_{n-1} ‖ seq ‖ time ‖ actor ‖ action ‖ subject ‖ detail)
//
// with every field length-prefixed, and hash_0 = 32 zero bytes. Editing a
// row breaks its hash; deleting or reordering rows breaks the next row's
// link. The head (last seq and hash) is also kept in meta, so removing rows
// from the end is detected too. Someone able to rewrite the whole file can
// rebuild a consistent chain; that is why the report prints the head hash
// (Head), which anchors the trail outside the laptop.
//
// Events carry names, never secret values.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Event is one audit record.
type Event struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`   // who: "technician", "web 10.77.0.5", ...
	Action  string    `json:"action"`  // what: "vault.create", "secret.put", ...
	Subject string    `json:"subject"` // on what: a secret's name, a node's MAC
	Detail  string    `json:"detail"`  // plain words; never secret material
	Hash    string    `json:"hash"`    // hex
}

// ErrAuditBroken is returned by VerifyAudit when the chain does not hold.
var ErrAuditBroken = errors.New("the audit trail was altered")

const auditHeadKey = "audit.head"

func chainHash(prev []byte, e Event) []byte {
	h := sha256.New()
	h.Write([]byte("onramp-audit-v1"))
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(e.Seq))
	field(prev)
	field(seq[:])
	field([]byte(e.Time.UTC().Format(time.RFC3339Nano)))
	field([]byte(e.Actor))
	field([]byte(e.Action))
	field([]byte(e.Subject))
	field([]byte(e.Detail))
	return h.Sum(nil)
}

// appendAudit adds e to the chain inside tx (the same transaction as the
// change it records, so the two commit or vanish together).
func appendAudit(ctx context.Context, tx *sql.Tx, e Event) error {
	prev := make([]byte, sha256.Size)
	var last int64
	err := tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&last, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("append audit event: %w", err)
	}
	e.Seq = last + 1
	e.Time = e.Time.UTC().Round(0)
	hash := chainHash(prev, e)
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO audit (seq, time, actor, action, subject, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		e.Seq, e.Time.Format(time.RFC3339Nano), e.Actor, e.Action, e.Subject, e.Detail, prev, hash); err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	head := make([]byte, 8+len(hash))
	binary.BigEndian.PutUint64(head, uint64(e.Seq))
	copy(head[8:], hash)
	if _, err := tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
		auditHeadKey, head); err != nil {
		return fmt.Errorf("append audit event: %w", err)
	}
	return nil
}

// Record appends one event to the audit trail.
func (db *DB) Record(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	return db.tx(ctx, func(tx *sql.Tx) error { return appendAudit(ctx, tx, e) })
}

// Audit returns every event, oldest first.
func (db *DB) Audit(ctx context.Context) ([]Event, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT seq, time, actor, action, subject, detail, hash FROM audit ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("read audit trail: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var ts string
		var hash []byte
		if err := rows.Scan(&e.Seq, &ts, &e.Actor, &e.Action, &e.Subject, &e.Detail, &hash); err != nil {
			return nil, fmt.Errorf("read audit trail: %w", err)
		}
		e.Time, _ = time.Parse(time.RFC3339Nano, ts)
		e.Hash = hex.EncodeToString(hash)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit trail: %w", err)
	}
	return out, nil
}

// VerifyAudit checks the whole chain and returns its head (last seq and hash,
// hex; "" for an empty trail). A broken chain is ErrAuditBroken with the
// first bad row.
func (db *DB) VerifyAudit(ctx context.Context) (seq int64, head string, err error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT seq, time, actor, action, subject, detail, prev, hash FROM audit ORDER BY seq")
	if err != nil {
		return 0, "", fmt.Errorf("verify audit trail: %w", err)
	}
	defer rows.Close()
	prev := make([]byte, sha256.Size)
	var want int64 = 1
	for rows.Next() {
		var e Event
		var ts string
		var rowPrev, rowHash []byte
		if err := rows.Scan(&e.Seq, &ts, &e.Actor, &e.Action, &e.Subject, &e.Detail, &rowPrev, &rowHash); err != nil {
			return 0, "", fmt.Errorf("verify audit trail: %w", err)
		}
		if e.Seq != want {
			return 0, "", fmt.Errorf("verify audit trail: %w: event %d is missing", ErrAuditBroken, want)
		}
		if e.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return 0, "", fmt.Errorf("verify audit trail: %w: event %d has a bad time", ErrAuditBroken, e.Seq)
		}
		if !bytes.Equal(rowPrev, prev) {
			return 0, "", fmt.Errorf("verify audit trail: %w: event %d does not follow event %d", ErrAuditBroken, e.Seq, e.Seq-1)
		}
		if !bytes.Equal(chainHash(prev, e), rowHash) {
			return 0, "", fmt.Errorf("verify audit trail: %w: event %d was edited", ErrAuditBroken, e.Seq)
		}
		prev, seq = rowHash, e.Seq
		want++
	}
	if err := rows.Err(); err != nil {
		return 0, "", fmt.Errorf("verify audit trail: %w", err)
	}
	var stored []byte
	err = db.sql.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", auditHeadKey).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if seq != 0 {
			return 0, "", fmt.Errorf("verify audit trail: %w: the recorded head is missing", ErrAuditBroken)
		}
		return 0, "", nil
	case err != nil:
		return 0, "", fmt.Errorf("verify audit trail: %w", err)
	}
	if len(stored) != 8+sha256.Size {
		return 0, "", fmt.Errorf("verify audit trail: %w: the recorded head is malformed", ErrAuditBroken)
	}
	if headSeq := int64(binary.BigEndian.Uint64(stored)); headSeq != seq || !bytes.Equal(stored[8:], prev) {
		return 0, "", fmt.Errorf("verify audit trail: %w: the trail ends at event %d but event %d was recorded", ErrAuditBroken, seq, headSeq)
	}
	return seq, hex.EncodeToString(prev), nil
}
