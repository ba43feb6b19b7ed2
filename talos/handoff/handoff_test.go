package handoff_test

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"onramp/talos/handoff"
)

var update = flag.Bool("update", false, "rewrite golden files")

var created = time.Date(2026, 11, 29, 15, 4, 5, 0, time.UTC)

func sampleFiles() []handoff.File {
	return []handoff.File{
		{Name: "talosconfig", Data: []byte("context: stmary\ncontexts:\n  stmary:\n    key: TALOSKEY-SECRET\n")},
		{Name: "secrets.yaml", Data: []byte("cluster:\n  id: abc\n  secret: CLUSTER-SECRET\n")},
		{Name: "kubeconfig", Data: []byte("apiVersion: v1\nclient-key-data: KUBE-SECRET\n")},
		{Name: "inventory.json", Data: []byte(`{"machines":[]}` + "\n")},
	}
}

func sampleManifest() handoff.Manifest {
	return handoff.Manifest{Site: "St. Mary lab 2", Cluster: "stmary", ClusterID: "abc", Created: created, Onramp: "test"}
}

func x25519(t *testing.T) (*age.X25519Identity, handoff.Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := handoff.ParseRecipient(id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	return id, r
}

// sshEd25519 returns an OpenSSH private key file and the recipient line.
func sshEd25519(t *testing.T) ([]byte, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "fleet@example")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(blk), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " fleet@example"
}

func sshRSA(t *testing.T) ([]byte, string) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(blk), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// The archive is byte-for-byte the same for the same inputs, whatever the
// order of the files, and matches the golden file.
func TestArchiveDeterministic(t *testing.T) {
	t.Parallel()
	a, ma, err := handoff.Plain(sampleManifest(), sampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	rev := sampleFiles()
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	m2 := sampleManifest()
	m2.Created = created.Add(300 * time.Millisecond).In(time.FixedZone("X", 3600)) // same second
	b, mb, err := handoff.Plain(m2, rev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the same files in another order gave a different archive")
	}
	if d := cmp.Diff(ma, mb); d != "" {
		t.Fatalf("manifests differ (-a +b):\n%s", d)
	}
	wantEntries := []handoff.Entry{
		{Name: "inventory.json", Size: 16, SHA256: handoff.Hash([]byte(`{"machines":[]}` + "\n"))},
		{Name: "kubeconfig", Size: int64(len(sampleFiles()[2].Data)), SHA256: handoff.Hash(sampleFiles()[2].Data)},
		{Name: "secrets.yaml", Size: int64(len(sampleFiles()[1].Data)), SHA256: handoff.Hash(sampleFiles()[1].Data)},
		{Name: "talosconfig", Size: int64(len(sampleFiles()[0].Data)), SHA256: handoff.Hash(sampleFiles()[0].Data)},
	}
	if d := cmp.Diff(wantEntries, ma.Files); d != "" {
		t.Errorf("manifest entries (-want +got):\n%s", d)
	}
	golden := filepath.Join("testdata", "archive.tar.gz")
	if *update {
		if err := os.WriteFile(golden, a, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update): %v", err)
	}
	if !bytes.Equal(want, a) {
		t.Errorf("archive differs from %s (run with -update if intended)", golden)
	}
	if tarBin, err := exec.LookPath("tar"); err == nil {
		out, err := exec.Command(tarBin, "-tzvf", golden).CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tzvf: %v\n%s", err, out)
		}
		for _, want := range []string{"-rw------- 0/0", "2026-11-29 15:04", "manifest.json", "talosconfig"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("tar -tzvf lacks %q:\n%s", want, out)
			}
		}
	}
}

func TestArchiveRefusesBadFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files []handoff.File
	}{
		{"slash", []handoff.File{{Name: "../etc/passwd", Data: []byte("x")}}},
		{"dir", []handoff.File{{Name: "a/b", Data: []byte("x")}}},
		{"manifest", []handoff.File{{Name: handoff.ManifestName, Data: []byte("{}")}}},
		{"hidden", []handoff.File{{Name: ".x", Data: []byte("x")}}},
		{"twice", []handoff.File{{Name: "a", Data: []byte("x")}, {Name: "a", Data: []byte("y")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := handoff.Plain(sampleManifest(), tc.files); !errors.Is(err, handoff.ErrBadFile) {
				t.Errorf("err = %v, want ErrBadFile", err)
			}
		})
	}
}

// A bundle written for each kind of recipient opens with its identity and
// only with it, and gives back exactly the files.
func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	xid, xr := x25519(t)
	edKey, edPub := sshEd25519(t)
	rsaKey, rsaPub := sshRSA(t)
	edR, err := handoff.ParseRecipient(edPub)
	if err != nil {
		t.Fatal(err)
	}
	rsaR, err := handoff.ParseRecipient(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	otherID, _ := x25519(t)
	edIDs, err := handoff.ParseIdentities(edKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaIDs, err := handoff.ParseIdentities(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	xIDs, err := handoff.ParseIdentities([]byte("# created: now\n" + xid.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	pass, err := handoff.PassphraseIdentity("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	wrongPass, _ := handoff.PassphraseIdentity("incorrect horse battery staple")

	for _, tc := range []struct {
		name  string
		opts  handoff.Options
		open  []age.Identity
		wrong []age.Identity
	}{
		{"x25519", handoff.Options{Recipients: []handoff.Recipient{xr}}, xIDs, []age.Identity{otherID}},
		{"ssh-ed25519", handoff.Options{Recipients: []handoff.Recipient{edR}}, edIDs, []age.Identity{otherID}},
		{"ssh-rsa", handoff.Options{Recipients: []handoff.Recipient{rsaR}}, rsaIDs, edIDs},
		{"several/second opens", handoff.Options{Recipients: []handoff.Recipient{xr, edR}}, edIDs, rsaIDs},
		{"passphrase", handoff.Options{Passphrase: "correct horse battery staple", ScryptWorkFactor: 10}, []age.Identity{pass}, []age.Identity{wrongPass}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			m, err := handoff.Seal(&buf, tc.opts, sampleManifest(), sampleFiles())
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"TALOSKEY-SECRET", "CLUSTER-SECRET", "KUBE-SECRET", "talosconfig"} {
				if bytes.Contains(buf.Bytes(), []byte(secret)) {
					t.Errorf("ciphertext holds %q", secret)
				}
			}
			o, err := handoff.Open(bytes.NewReader(buf.Bytes()), tc.open...)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if d := cmp.Diff(m, o.Manifest); d != "" {
				t.Errorf("manifest (-sealed +opened):\n%s", d)
			}
			for _, f := range sampleFiles() {
				got, ok := o.File(f.Name)
				if !ok || !bytes.Equal(got, f.Data) {
					t.Errorf("%s: got %q", f.Name, got)
				}
			}
			_, err = handoff.Open(bytes.NewReader(buf.Bytes()), tc.wrong...)
			if !errors.Is(err, handoff.ErrWrongIdentity) {
				t.Errorf("wrong identity: err = %v, want ErrWrongIdentity", err)
			}
		})
	}
}

func TestSealRefuses(t *testing.T) {
	t.Parallel()
	_, xr := x25519(t)
	var buf bytes.Buffer
	if _, err := handoff.Seal(&buf, handoff.Options{}, sampleManifest(), sampleFiles()); !errors.Is(err, handoff.ErrNoRecipient) {
		t.Errorf("no recipient: %v", err)
	}
	if _, err := handoff.Seal(&buf, handoff.Options{Recipients: []handoff.Recipient{xr}, Passphrase: "x"}, sampleManifest(), sampleFiles()); err == nil {
		t.Error("passphrase beside a key was accepted")
	}
}

func TestParseRecipients(t *testing.T) {
	t.Parallel()
	xid, xr := x25519(t)
	_, edPub := sshEd25519(t)
	for _, tc := range []struct {
		name    string
		in      []string
		want    []string // kinds
		wantErr string
	}{
		{"x25519 and ssh with comment, duplicates dropped", []string{xr.Text + "\n# fleet\n\n" + edPub, xr.Text}, []string{"age-x25519", "ssh-ed25519"}, ""},
		{"private age key", []string{xid.String()}, nil, "this is a private key"},
		{"private ssh key", []string{"-----BEGIN OPENSSH PRIVATE KEY-----"}, nil, "this is a private key"},
		{"truncated age key", []string{xr.Text[:40]}, nil, "malformed"},
		{"ecdsa", []string{"ecdsa-sha2-nistp256 AAAAE2VjZHNh"}, nil, `"ecdsa-sha2-nistp256" is not`},
		{"post-quantum", []string{"age1pq1abc"}, nil, "post-quantum"},
		{"bad ssh", []string{"ssh-ed25519 AAAAnotbase64"}, nil, "ssh-ed25519 key is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs, err := handoff.ParseRecipients(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, handoff.ErrBadRecipient) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "AGE-SECRET-KEY-1") {
					t.Errorf("error quotes the private key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, r := range rs {
				kinds = append(kinds, r.Kind)
				if strings.Contains(r.Text, "fleet@example") {
					t.Errorf("comment kept in %q", r.Text)
				}
			}
			if d := cmp.Diff(tc.want, kinds); d != "" {
				t.Errorf("kinds (-want +got):\n%s", d)
			}
		})
	}
}

// A damaged bundle is refused with ErrCorrupt, wherever the damage is.
func TestOpenCorrupt(t *testing.T) {
	t.Parallel()
	xid, xr := x25519(t)
	var buf bytes.Buffer
	if _, err := handoff.Seal(&buf, handoff.Options{Recipients: []handoff.Recipient{xr}}, sampleManifest(), sampleFiles()); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flip := func(at int) []byte {
		b := bytes.Clone(good)
		b[at] ^= 0x40
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not age", []byte("hello, this is not a bundle\n")},
		{"header cut", good[:40]},
		{"truncated body", good[:len(good)-20]},
		{"truncated at a chunk edge", good[:len(good)-1]},
		{"flipped body byte", flip(len(good) - 30)},
		{"flipped header mac", flip(bytes.Index(good, []byte("\n---")) + 6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := handoff.Open(bytes.NewReader(tc.data), xid)
			if !errors.Is(err, handoff.ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
		})
	}

	// A well-encrypted archive whose manifest does not match its files.
	var plain bytes.Buffer
	if _, err := handoff.WriteArchive(&plain, sampleManifest(), sampleFiles()); err != nil {
		t.Fatal(err)
	}
	// The same archive with one byte of the talosconfig changed (same
	// length, so the tar stays well-formed and only the hash catches it).
	tampered := bytes.Replace(gunzip(t, plain.Bytes()), []byte("TALOSKEY-SECRET"), []byte("TALOSKEY-SECRXT"), 1)
	var enc bytes.Buffer
	w, err := age.Encrypt(&enc, xr.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzipBytes(t, tampered)
	w.Write(gz)
	w.Close()
	_, err = handoff.Open(&enc, xid)
	if !errors.Is(err, handoff.ErrCorrupt) || !strings.Contains(err.Error(), "talosconfig does not match its SHA-256") {
		t.Errorf("tampered file: err = %v", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	t.Parallel()
	xid, xr := x25519(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "stmary.age")
	s, err := handoff.WriteFile(path, handoff.Options{Recipients: []handoff.Recipient{xr}}, sampleManifest(), sampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != s.Size {
		t.Errorf("mode %v size %d, want 0600 %d", fi.Mode().Perm(), fi.Size(), s.Size)
	}
	b, _ := os.ReadFile(path)
	if handoff.Hash(b) != s.SHA256 {
		t.Errorf("sha256 %s, file's %s", s.SHA256, handoff.Hash(b))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir holds %d entries, want the bundle only", len(ents))
	}
	for _, secret := range []string{"TALOSKEY-SECRET", "CLUSTER-SECRET", "KUBE-SECRET"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("file holds %q", secret)
		}
	}
	if _, err := handoff.Open(bytes.NewReader(b), xid); err != nil {
		t.Fatal(err)
	}
	// A failed seal leaves nothing behind.
	if _, err := handoff.WriteFile(filepath.Join(dir, "bad.age"), handoff.Options{}, sampleManifest(), sampleFiles()); err == nil {
		t.Fatal("sealed without a recipient")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("a failed seal left %d entries", len(ents))
	}

	out := filepath.Join(dir, "out")
	o, _ := handoff.Open(bytes.NewReader(b), xid)
	if err := o.Extract(out); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o700 {
		t.Errorf("out dir mode %v", fi.Mode().Perm())
	}
	for _, f := range append(sampleFiles(), handoff.File{Name: handoff.ManifestName}) {
		fi, err := os.Stat(filepath.Join(out, f.Name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f.Name, fi, err)
		}
	}
	if err := o.Extract(out); err == nil {
		t.Error("extracted into a non-empty directory")
	}
}

// The age tool of the distribution (a peer we did not write) decrypts the
// bundle with the fleet manager's X25519 or ssh-ed25519 key, and tar lists
// what it holds.
func TestAgeCLIDecrypts(t *testing.T) {
	t.Parallel()
	ageBin, err := exec.LookPath("age")
	if err != nil {
		t.Skip("age CLI not installed (apt-get install age)")
	}
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("tar not installed")
	}
	xid, xr := x25519(t)
	edKey, edPub := sshEd25519(t)
	edR, _ := handoff.ParseRecipient(edPub)
	other, _ := x25519(t)
	dir := t.TempDir()
	keys := map[string][]byte{
		"x25519":      []byte(xid.String() + "\n"),
		"ssh-ed25519": edKey,
		"other":       []byte(other.String() + "\n"),
	}
	for name, k := range keys {
		if err := os.WriteFile(filepath.Join(dir, name+".key"), k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bundle := filepath.Join(dir, "bundle.age")
	if _, err := handoff.WriteFile(bundle, handoff.Options{Recipients: []handoff.Recipient{xr, edR}}, sampleManifest(), sampleFiles()); err != nil {
		t.Fatal(err)
	}
	want, _, _ := handoff.Plain(sampleManifest(), sampleFiles())
	for _, id := range []string{"x25519", "ssh-ed25519"} {
		out := filepath.Join(dir, id+".tar.gz")
		if b, err := exec.CommandContext(t.Context(), ageBin, "-d", "-i", filepath.Join(dir, id+".key"), "-o", out, bundle).CombinedOutput(); err != nil {
			t.Fatalf("age -d -i %s: %v\n%s", id, err, b)
		}
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: age -d gave %d bytes, not the archive (%d)", id, len(got), len(want))
		}
		list, err := exec.CommandContext(t.Context(), tarBin, "-tzf", out).CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tzf: %v\n%s", err, list)
		}
		if d := cmp.Diff("manifest.json\ninventory.json\nkubeconfig\nsecrets.yaml\ntalosconfig\n", string(list)); d != "" {
			t.Errorf("tar -t (-want +got):\n%s", d)
		}
	}
	b, err := exec.CommandContext(t.Context(), ageBin, "-d", "-i", filepath.Join(dir, "other.key"), bundle).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "no identity matched") {
		t.Errorf("age -d with another key: err %v, output %q", err, b)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzOpen(f *testing.F) {
	id, err := age.ParseX25519Identity("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
	if err != nil {
		f.Fatal(err)
	}
	r, _ := handoff.ParseRecipient(id.Recipient().String())
	var buf bytes.Buffer
	if _, err := handoff.Seal(&buf, handoff.Options{Recipients: []handoff.Recipient{r}}, sampleManifest(), sampleFiles()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("age-encryption.org/v1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := handoff.Open(bytes.NewReader(data), id)
		if err != nil {
			if !errors.Is(err, handoff.ErrCorrupt) && !errors.Is(err, handoff.ErrWrongIdentity) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// Whatever opens is consistent with its manifest and safe to extract.
		if len(o.Files) != len(o.Manifest.Files) {
			t.Fatal("manifest and files disagree")
		}
		for k, f := range o.Files {
			if handoff.Hash(f.Data) != o.Manifest.Files[k].SHA256 || strings.ContainsAny(f.Name, "/\\") || strings.HasPrefix(f.Name, ".") {
				t.Fatalf("bad file %q accepted", f.Name)
			}
		}
	})
}
