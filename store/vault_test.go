package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testPass  = "correct horse battery staple"
	testPass2 = "tulip-river-anvil-42"
	// Tests use a small scrypt work factor; production uses 18.
	testWork = 10
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newVaultT(t *testing.T, dir string, clock *fakeClock) (*DB, *Vault) {
	t.Helper()
	db := openT(t, dir)
	opts := VaultOptions{Actor: "test", ScryptWorkFactor: testWork}
	if clock != nil {
		opts.Now = clock.Now
	}
	return db, NewVault(db, opts)
}

func TestCheckPassphrase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pass  string
		words string // "" = accepted
	}{
		{"", "empty"},
		{"            ", "empty"},
		{"short1!", "at least 12"},
		{"aaaaaaaaaaaaaaaa", "too few different"},
		{"abababababababab", "too few different"},
		{"password1234", "well-known"},
		{"Passphrase!!", "well-known"},
		{"abcdefghijklmnop", "sequence"},
		{"1234567890123", "well-known"},
		{"98765432109876", ""}, // not a strict run (0→9 wraps), long enough: allowed
		{testPass, ""},
		{testPass2, ""},
		{"Zürich-Bergen-7-Öl", ""},
		{string([]byte{0xff, 0xfe, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'}), "not valid text"},
	}
	for _, tt := range tests {
		err := CheckPassphrase(tt.pass)
		switch {
		case tt.words == "" && err != nil:
			t.Errorf("CheckPassphrase(%q) = %v, want accepted", tt.pass, err)
		case tt.words != "" && (!errors.Is(err, ErrWeakPassphrase) || !strings.Contains(err.Error(), tt.words)):
			t.Errorf("CheckPassphrase(%q) = %v, want ErrWeakPassphrase with %q", tt.pass, err, tt.words)
		}
	}
}

func TestVaultLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := t.Context()
	db, v := newVaultT(t, dir, nil)

	if ok, err := v.Exists(ctx); err != nil || ok {
		t.Fatalf("Exists before Create = %v, %v", ok, err)
	}
	if err := v.Unlock(ctx, testPass); !errors.Is(err, ErrNoVault) {
		t.Fatalf("Unlock before Create: %v", err)
	}
	if err := v.Put(ctx, "x", []byte("y"), ""); !errors.Is(err, ErrLocked) {
		t.Fatalf("Put before Create: %v", err)
	}
	if err := v.Create(ctx, "short"); !errors.Is(err, ErrWeakPassphrase) {
		t.Fatalf("Create with weak passphrase: %v", err)
	}
	if err := v.Create(ctx, testPass); err != nil {
		t.Fatal(err)
	}
	if err := v.Create(ctx, testPass2); !errors.Is(err, ErrVaultExists) {
		t.Fatalf("second Create: %v", err)
	}
	if !v.Unlocked() {
		t.Fatal("not unlocked after Create")
	}
	secret := []byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKiller\n-----END EC PRIVATE KEY-----\n")
	if err := v.PutMany(ctx, map[string][]byte{"talos/secrets.yaml": secret, "omni/join-token": []byte("tok-123")}, "generated"); err != nil {
		t.Fatal(err)
	}
	if err := v.Put(ctx, "omni/join-token", []byte("tok-456"), "replaced"); err != nil {
		t.Fatal(err)
	}
	names, _ := v.Names(ctx)
	if strings.Join(names, ",") != "omni/join-token,talos/secrets.yaml" {
		t.Fatalf("names = %v", names)
	}
	if err := v.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, "talos/secrets.yaml"); !errors.Is(err, ErrLocked) {
		t.Fatalf("Get while locked: %v", err)
	}
	if ok, _ := v.Has(ctx, "talos/secrets.yaml"); !ok {
		t.Fatal("Has while locked = false")
	}
	if err := v.Delete(ctx, "omni/join-token", ""); !errors.Is(err, ErrLocked) {
		t.Fatalf("Delete while locked: %v", err)
	}
	db.Close()

	// A new process: keys come back only with the passphrase.
	db2, v2 := newVaultT(t, dir, nil)
	if ok, _ := v2.Exists(ctx); !ok || v2.Unlocked() {
		t.Fatalf("reopened: exists=%v unlocked=%v", ok, v2.Unlocked())
	}
	if err := v2.Unlock(ctx, testPass2); !errors.Is(err, ErrWrongPassphrase) || err.Error() != "unlock vault: wrong passphrase" {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if v2.Unlocked() {
		t.Fatal("unlocked with the wrong passphrase")
	}
	if err := v2.Unlock(ctx, testPass); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"talos/secrets.yaml": string(secret), "omni/join-token": "tok-456"} {
		got, err := v2.Get(ctx, name)
		if err != nil || string(got) != want {
			t.Errorf("Get(%s) = %q, %v", name, got, err)
		}
	}
	if _, err := v2.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope): %v", err)
	}

	// Change the passphrase: the old one stops working, the secrets stay.
	if err := v2.ChangePassphrase(ctx, testPass2, "another-good-one-9"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("ChangePassphrase with a wrong old one: %v", err)
	}
	if err := v2.ChangePassphrase(ctx, testPass, "aaaaaaaaaaaaaaaa"); !errors.Is(err, ErrWeakPassphrase) {
		t.Fatalf("ChangePassphrase to a weak one: %v", err)
	}
	if err := v2.ChangePassphrase(ctx, testPass, testPass2); err != nil {
		t.Fatal(err)
	}
	v2.Lock(ctx)
	if err := v2.Unlock(ctx, testPass); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("old passphrase after change: %v", err)
	}
	if err := v2.Unlock(ctx, testPass2); err != nil {
		t.Fatalf("new passphrase after change: %v", err)
	}
	if got, _ := v2.Get(ctx, "talos/secrets.yaml"); !bytes.Equal(got, secret) {
		t.Fatal("secret changed with the passphrase")
	}
	if err := v2.Delete(ctx, "omni/join-token", "handed off"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := v2.Has(ctx, "omni/join-token"); ok {
		t.Fatal("deleted secret still there")
	}

	// The audit trail has every step, names only, and verifies.
	events, err := db2.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action+":"+e.Subject)
		for _, leak := range []string{"tok-", "BEGIN", testPass, testPass2} {
			if strings.Contains(e.Detail+e.Subject, leak) {
				t.Errorf("audit event %+v contains %q", e, leak)
			}
		}
	}
	got := strings.Join(actions, " ")
	want := "vault.create: secret.put:omni/join-token secret.put:talos/secrets.yaml secret.put:omni/join-token vault.lock: " +
		"vault.unlock.failed: vault.unlock: vault.unlock.failed: vault.passphrase: vault.lock: vault.unlock.failed: vault.unlock: secret.delete:omni/join-token"
	if got != want {
		t.Errorf("audit actions:\n got %s\nwant %s", got, want)
	}
	if _, _, err := db2.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUnlockBackoff(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := &fakeClock{t: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)}
	_, v := newVaultT(t, t.TempDir(), clock)
	if err := v.Create(ctx, testPass); err != nil {
		t.Fatal(err)
	}
	v.Lock(ctx)
	// Three free attempts, then waits that double: 1s, 2s, 4s ...
	for i := range freeAttempts {
		if err := v.Unlock(ctx, "wrong wrong wrong"); !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	// Even the right passphrase waits now.
	err := v.Unlock(ctx, testPass)
	if !errors.Is(err, ErrTooManyAttempts) || !strings.Contains(err.Error(), "try again in 1s") {
		t.Fatalf("during backoff: %v", err)
	}
	clock.Add(time.Second)
	if err := v.Unlock(ctx, "still wrong!!"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("after the wait: %v", err)
	}
	if err := v.Unlock(ctx, testPass); !errors.Is(err, ErrTooManyAttempts) || !strings.Contains(err.Error(), "2s") {
		t.Fatalf("second backoff: %v", err)
	}
	clock.Add(2 * time.Second)
	if err := v.Unlock(ctx, testPass); err != nil {
		t.Fatalf("right passphrase after the wait: %v", err)
	}
	// Success resets the count.
	v.Lock(ctx)
	if err := v.Unlock(ctx, "wrong wrong wrong"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatal(err)
	}
	if err := v.Unlock(ctx, testPass); err != nil {
		t.Fatalf("one failure after a reset must not wait: %v", err)
	}
}

// A ciphertext copied onto another secret's row is refused, not returned as
// that secret.
func TestSwappedCiphertextIsRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, v := newVaultT(t, t.TempDir(), nil)
	if err := v.Create(ctx, testPass); err != nil {
		t.Fatal(err)
	}
	v.PutMany(ctx, map[string][]byte{"a": []byte("value a"), "b": []byte("value b")}, "")
	if _, err := db.sql.Exec("UPDATE secrets SET value = (SELECT value FROM secrets WHERE name = 'a') WHERE name = 'b'"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, "b"); !errors.Is(err, ErrCorruptSecret) {
		t.Fatalf("swapped: %v", err)
	}
	if _, err := db.sql.Exec("UPDATE secrets SET value = x'00010203' WHERE name = 'a'"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, "a"); !errors.Is(err, ErrCorruptSecret) {
		t.Fatalf("garbage: %v", err)
	}
}

// Nothing secret reaches the disk in plaintext: the database, its WAL and
// shared-memory files are searched for the values, the passphrase, the
// private key and PEM markers, both while open and after Close.
func TestNothingSecretInPlaintextOnDisk(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	db, v := newVaultT(t, dir, nil)
	if err := v.Create(ctx, testPass); err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"talos/secrets.yaml": []byte("cluster:\n  id: UNIQUE-CLUSTER-ID-7f3a\ncerts:\n  os:\n    key: -----BEGIN ED25519 PRIVATE KEY-----\nSECRETKEYBYTES-91cc\n-----END ED25519 PRIVATE KEY-----\n"),
		"omni/join-token":    []byte("JOIN-TOKEN-b81e55"),
	}
	for range 20 { // enough writes to have WAL frames
		if err := v.PutMany(ctx, secrets, "test"); err != nil {
			t.Fatal(err)
		}
	}
	v.mu.Lock()
	identity := v.id.String()
	v.mu.Unlock()
	needles := []string{"UNIQUE-CLUSTER-ID-7f3a", "SECRETKEYBYTES-91cc", "JOIN-TOKEN-b81e55", "-----BEGIN", "PRIVATE KEY", testPass, identity, "AGE-SECRET-KEY"}

	check := func(stage string, wantFiles int) {
		t.Helper()
		found := 0
		for _, suffix := range []string{"", "-wal", "-shm"} {
			p := filepath.Join(dir, DBFile+suffix)
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			found++
			for _, n := range needles {
				if bytes.Contains(b, []byte(n)) {
					t.Errorf("%s: %s contains %q in plaintext", stage, p, n)
				}
			}
		}
		if found < wantFiles {
			t.Fatalf("%s: only %d of the database files exist", stage, found)
		}
	}
	check("open", 2) // db and -wal at least
	db.Close()
	check("closed", 1)
}
