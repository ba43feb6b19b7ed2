package app

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"onramp/store"
	"onramp/talos"
)

const (
	vaultPass  = "correct horse battery staple"
	vaultPass2 = "tulip-river-anvil-42"
	joinTok    = "omni-join-token-SECRET-5e1d"
)

// openSiteAndVault is one Onramp process: a Site and a Vault on dir, with a
// low scrypt work factor to keep tests quick.
func openSiteAndVault(t *testing.T, dir string, bus *Bus) (*Site, *Vault) {
	t.Helper()
	s, err := NewSite(dir, bus)
	if err != nil {
		t.Fatal(err)
	}
	v := newVault(dir, bus, s, store.VaultOptions{Actor: "test", ScryptWorkFactor: 10})
	t.Cleanup(v.close)
	return s, v
}

func sampleSiteWithOmni(t *testing.T) talos.Site {
	t.Helper()
	b, err := os.ReadFile("../talos/testdata/site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	site, err := talos.ParseSite(b)
	if err != nil {
		t.Fatal(err)
	}
	site.Handoff.Target = talos.HandoffOmni
	site.Handoff.Omni = &talos.Omni{APIURL: "https://omni.example:8090", JoinToken: joinTok}
	return *site
}

func bundleBytes(t *testing.T, s *Site) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bundle == nil {
		return nil
	}
	b, err := talos.MarshalSecrets(s.bundle)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitEvent reads ch until an event called name, for which ok holds, arrives.
func waitEvent(t *testing.T, ch <-chan Message, name string, ok func(any) bool) Message {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-ch:
			if m.Name == name && ok(m.Data) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q event", name)
		}
	}
}

// The technician's restart: secrets made before the vault existed are
// stored when it is created, and after a restart they come back, the same
// bytes, once the vault is unlocked — with the Omni join token.
func TestVaultKeepsSiteSecretsAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bus := NewBus()
	events, unsub := bus.Subscribe()
	defer unsub()

	s, v := openSiteAndVault(t, dir, bus)
	if st, err := v.Status(); err != nil || st != (VaultStatus{}) {
		t.Fatalf("new data dir: status %+v, %v", st, err)
	}
	if _, err := s.Save(sampleSiteWithOmni(t)); err != nil {
		t.Fatal(err)
	}
	// No vault: today's behaviour, in memory only.
	sv, err := s.GenerateSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !sv.Secrets || sv.SecretsPersisted {
		t.Fatalf("without a vault: secrets=%v persisted=%v", sv.Secrets, sv.SecretsPersisted)
	}
	orig := bundleBytes(t, s)

	if _, err := v.Create(""); !errors.Is(err, store.ErrWeakPassphrase) {
		t.Fatalf("empty passphrase: %v", err)
	}
	if _, err := v.Unlock(vaultPass); err == nil || !strings.Contains(err.Error(), "no vault yet") {
		t.Fatalf("unlock before create: %v", err)
	}
	st, err := v.Create(vaultPass)
	if err != nil || st != (VaultStatus{Exists: true, Unlocked: true}) {
		t.Fatalf("create: %+v, %v", st, err)
	}
	// The Site page learns that its secrets are now persisted, then the
	// panel that the vault changed.
	waitEvent(t, events, "site:changed", func(d any) bool { return d.(SiteView).SecretsPersisted })
	waitEvent(t, events, "vault:changed", func(d any) bool { return d == VaultStatus{Exists: true, Unlocked: true} })
	if sv, _ := s.Get(); !sv.SecretsPersisted {
		t.Fatal("creating the vault did not persist the secrets in memory")
	}
	// Generating again keeps the bundle (once per site).
	if _, err := s.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bundleBytes(t, s), orig) {
		t.Fatal("GenerateSecrets replaced an existing bundle")
	}
	v.close() // the process ends

	// Restart.
	s2, v2 := openSiteAndVault(t, dir, nil)
	if st, err := v2.Status(); err != nil || st != (VaultStatus{Exists: true}) {
		t.Fatalf("after restart: %+v, %v", st, err)
	}
	sv2, _ := s2.Get()
	if sv2.Secrets || joinToken(sv2.Site) != "" {
		t.Fatalf("locked vault: secrets=%v token=%q in memory", sv2.Secrets, joinToken(sv2.Site))
	}
	if !s2.secretsLockedInVault() {
		t.Fatal("secretsLockedInVault = false with the bundle in a locked vault")
	}
	if _, err := s2.GenerateSecrets(); err == nil || !strings.Contains(err.Error(), "unlock the vault first") {
		t.Fatalf("generate while locked must refuse (a second bundle would split the cluster): %v", err)
	}
	if _, err := v2.Unlock(vaultPass2); !errors.Is(err, store.ErrWrongPassphrase) || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	st, err = v2.Unlock(vaultPass)
	if err != nil || !st.Unlocked {
		t.Fatalf("unlock: %+v, %v", st, err)
	}
	if s2.secretsLockedInVault() {
		t.Fatal("secretsLockedInVault = true after unlock")
	}
	sv2, _ = s2.Get()
	if !sv2.Secrets || !sv2.SecretsPersisted {
		t.Fatalf("after unlock: secrets=%v persisted=%v", sv2.Secrets, sv2.SecretsPersisted)
	}
	if diff := cmp.Diff(string(orig), string(bundleBytes(t, s2))); diff != "" {
		t.Fatal("bundle after restart differs from the one generated (diff not shown: secret)")
	}
	if joinToken(sv2.Site) != joinTok {
		t.Fatal("Omni join token not restored from the vault")
	}
	// The export still never carries the token.
	if y, _ := s2.Export(); strings.Contains(y, joinTok) {
		t.Fatal("export contains the join token")
	}

	// Lock drops both from memory.
	if st, err := v2.Lock(); err != nil || st.Unlocked {
		t.Fatalf("lock: %+v, %v", st, err)
	}
	sv2, _ = s2.Get()
	if sv2.Secrets || sv2.SecretsPersisted || joinToken(sv2.Site) != "" {
		t.Fatalf("after lock: secrets=%v persisted=%v token=%q", sv2.Secrets, sv2.SecretsPersisted, joinToken(sv2.Site))
	}

	// Passphrase change: old stops working, the secrets stay.
	if _, err := v2.ChangePassphrase(vaultPass, vaultPass2); err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Unlock(vaultPass); !errors.Is(err, store.ErrWrongPassphrase) {
		t.Fatalf("old passphrase after change: %v", err)
	}
	if _, err := v2.Unlock(vaultPass2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bundleBytes(t, s2), orig) {
		t.Fatal("bundle changed with the passphrase")
	}

	// The audit trail names what happened, and holds.
	v2.mu.Lock()
	db := v2.db
	v2.mu.Unlock()
	evs, err := db.Audit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Action+":"+e.Subject)
	}
	joined := strings.Join(got, " ")
	for _, w := range []string{"vault.create:", "secret.put:" + secretBundle, "secret.put:" + secretJoinToken, "vault.unlock.failed:", "vault.unlock:", "vault.lock:", "vault.passphrase:"} {
		if !strings.Contains(joined, w) {
			t.Errorf("audit trail lacks %s: %s", w, joined)
		}
	}
	if _, _, err := db.VerifyAudit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// Secrets generated with the vault unlocked go straight into it; a join
// token saved later follows; nothing in the data dir is plaintext.
func TestVaultStoresNewSecretsEncrypted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, v := openSiteAndVault(t, dir, nil)
	if _, err := v.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	site := sampleSiteWithOmni(t)
	if _, err := s.Save(site); err != nil {
		t.Fatal(err)
	}
	sv, err := s.GenerateSecrets()
	if err != nil || !sv.SecretsPersisted {
		t.Fatalf("generate with the vault unlocked: persisted=%v err=%v", sv.SecretsPersisted, err)
	}
	// A new token, typed in later, replaces the stored one.
	const newTok = "omni-join-token-SECOND-77ab"
	site.Handoff.Omni.JoinToken = newTok
	if _, err := s.Save(site); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	keyPEM := string(s.bundle.Certs.OS.Key)
	s.mu.Unlock()
	if !strings.Contains(keyPEM, "PRIVATE KEY") {
		t.Fatalf("unexpected CA key encoding: %d bytes", len(keyPEM))
	}
	keyLine := strings.Split(keyPEM, "\n")[1] // base64 of the key itself

	check := func(stage string) {
		t.Helper()
		n := 0
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			n++
			b, _ := os.ReadFile(p)
			for _, marker := range []string{"-----BEGIN", "PRIVATE KEY", "secretboxEncryptionSecret", "bootstraptoken", joinTok, newTok, keyLine, vaultPass} {
				if strings.Contains(string(b), marker) {
					t.Errorf("%s: %s contains %q: secrets written in plaintext", stage, p, marker)
				}
			}
			return nil
		})
		if n < 2 {
			t.Fatalf("%s: only %d files in the data dir", stage, n)
		}
	}
	check("running")
	v.close()
	check("closed")

	// The token saved after the secrets came back with them.
	s2, v2 := openSiteAndVault(t, dir, nil)
	if _, err := v2.Unlock(vaultPass); err != nil {
		t.Fatal(err)
	}
	if sv, _ := s2.Get(); joinToken(sv.Site) != newTok || !sv.SecretsPersisted {
		t.Fatalf("after restart: token restored=%v persisted=%v", joinToken(sv.Site) == newTok, sv.SecretsPersisted)
	}
	// Removing the token (handoff changed to a bundle) removes it from the vault.
	site.Handoff = talos.Handoff{Target: talos.HandoffBundle}
	if _, err := s2.Save(site); err != nil {
		t.Fatal(err)
	}
	v2.store.Lock(t.Context())
	if held, _ := v2.store.Has(t.Context(), secretJoinToken); held {
		t.Fatal("cleared join token still in the vault")
	}
}

// Another Onramp holding the database: the vault says so (naming the
// file), and the site keeps working in memory.
func TestVaultWhenDatabaseIsInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	other, err := store.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	s, v := openSiteAndVault(t, dir, nil)
	_, err = v.Status()
	if !errors.Is(err, store.ErrInUse) || !strings.Contains(err.Error(), filepath.Join(dir, store.DBFile)) {
		t.Fatalf("status with the db in use: %v", err)
	}
	if _, err := v.Create(vaultPass); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("create with the db in use: %v", err)
	}
	if _, err := s.Save(sampleSiteWithOmni(t)); err != nil {
		t.Fatal(err)
	}
	if sv, err := s.GenerateSecrets(); err != nil || !sv.Secrets || sv.SecretsPersisted {
		t.Fatalf("in-memory secrets: %+v, %v", sv, err)
	}
	// The other Onramp exits: the next call opens the database.
	other.Close()
	if st, err := v.Create(vaultPass); err != nil || !st.Unlocked {
		t.Fatalf("create after the other closed: %+v, %v", st, err)
	}
	if sv, _ := s.Get(); !sv.SecretsPersisted {
		t.Fatal("in-memory secrets not stored by Create")
	}
}

// A corrupt onramp.db is an error naming the file; it is not overwritten,
// and the rest of the app starts.
func TestCorruptVaultDatabaseIsNotOverwritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, store.DBFile)
	junk := []byte("this is not a database, but it is someone's file\n")
	if err := os.WriteFile(p, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{DataDir: dir, Mode: ModeWeb})
	if err != nil {
		t.Fatalf("the app must start without its vault: %v", err)
	}
	defer a.Close()
	if _, err := a.Vault.Status(); !errors.Is(err, store.ErrForeign) || !strings.Contains(err.Error(), p) {
		t.Fatalf("status: %v", err)
	}
	if _, err := a.Vault.Create(vaultPass); err == nil {
		t.Fatal("created a vault over a foreign file")
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, junk) {
		t.Fatal("the foreign file was modified")
	}
}

// The Vault service is reachable over the web transport.
func TestVaultOverWeb(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	defer a.Close()
	w, err := NewWeb(a, WebConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	h := w.Handler()
	rec := post(t, h, "/api/call/Vault.Status", `[]`, nil)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"exists":false,"unlocked":false}` {
		t.Fatalf("status: %d %s", rec.Code, rec.Body)
	}
	rec = post(t, h, "/api/call/Vault.Create", `["short"]`, nil)
	if rec.Code == 200 || !strings.Contains(rec.Body.String(), "at least 12") {
		t.Fatalf("weak create: %d %s", rec.Code, rec.Body)
	}
}
