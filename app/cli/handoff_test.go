package cli_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"onramp/app/cli"
	"onramp/talos/handoff"
)

func writeBundle(t *testing.T, dir string, opts handoff.Options) string {
	t.Helper()
	path := filepath.Join(dir, "lab.age")
	files := []handoff.File{
		{Name: "talosconfig", Data: []byte("context: lab\n")},
		{Name: "secrets.yaml", Data: []byte("cluster:\n  id: X\n")},
	}
	if _, err := handoff.WriteFile(path, opts, handoff.Manifest{Cluster: "lab", ClusterID: "X", Created: time.Unix(1e9, 0), Onramp: "t"}, files); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHandoffOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	r, _ := handoff.ParseRecipient(id.Recipient().String())
	bundle := writeBundle(t, dir, handoff.Options{Recipients: []handoff.Recipient{r}})
	idFile := filepath.Join(dir, "fleet.key")
	otherFile := filepath.Join(dir, "other.key")
	os.WriteFile(idFile, []byte("# fleet\n"+id.String()+"\n"), 0o600)
	os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)
	passBundleDir := t.TempDir()
	passBundle := writeBundle(t, passBundleDir, handoff.Options{Passphrase: "fleet passphrase 1234", ScryptWorkFactor: 10})
	passFile := filepath.Join(dir, "pass.txt")
	os.WriteFile(passFile, []byte("fleet passphrase 1234\n"), 0o600)
	cut := filepath.Join(dir, "cut.age")
	b, _ := os.ReadFile(bundle)
	os.WriteFile(cut, b[:len(b)-10], 0o600)

	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{"bundle first", []string{"open", bundle, "--identity", idFile, "--out", "OUT"}, "", "All 2 files match the manifest"},
		{"expected hash", []string{"open", bundle, "--identity", idFile, "--out", "OUT", "--sha256", strings.ToUpper(handoff.Hash(b))}, "", "Bundle SHA-256 " + handoff.Hash(b)},
		{"other hash", []string{"open", bundle, "--identity", idFile, "--out", "OUT", "--sha256", strings.Repeat("0", 64)}, "not the bundle the report names", ""},
		{"flags first", []string{"open", "--identity", idFile, "--out", "OUT", bundle}, "", "talosconfig"},
		{"passphrase", []string{"open", passBundle, "--passphrase-file", passFile, "--out", "OUT"}, "", "cluster lab (ID X)"},
		{"wrong identity", []string{"open", bundle, "--identity", otherFile, "--out", "OUT"}, "this key does not open the bundle", ""},
		{"truncated", []string{"open", cut, "--identity", idFile, "--out", "OUT"}, "damaged or incomplete", ""},
		{"no out", []string{"open", bundle, "--identity", idFile}, "--out is required", ""},
		{"no identity", []string{"open", bundle, "--out", "OUT"}, "give --identity or --passphrase-file", ""},
		{"two bundles", []string{"open", bundle, bundle, "--identity", idFile, "--out", "OUT"}, "exactly one bundle", ""},
		{"not a key", []string{"open", bundle, "--identity", bundle, "--out", "OUT"}, "not an age identity file", ""},
		{"other verb", []string{"close"}, "the only subcommand is open", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			args := make([]string, len(tc.args))
			for k, a := range tc.args {
				args[k] = strings.ReplaceAll(a, "OUT", out)
			}
			var stdout, stderr bytes.Buffer
			err := cli.Handoff(t.Context(), args, &stdout, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error()+stderr.String(), id.String()) || strings.Contains(err.Error()+stderr.String(), other.String()) {
					t.Error("a private key was printed")
				}
				if _, err := os.Stat(out); err == nil {
					if ents, _ := os.ReadDir(out); len(ents) > 0 {
						t.Errorf("files written on failure: %v", ents)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v\n%s", err, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, stdout.String())
			}
			if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o700 {
				t.Errorf("dir mode %v", fi.Mode().Perm())
			}
			for _, name := range []string{"talosconfig", "secrets.yaml", "manifest.json"} {
				fi, err := os.Stat(filepath.Join(out, name))
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: %v %v", name, fi, err)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(out, "talosconfig")); string(got) != "context: lab\n" {
				t.Errorf("talosconfig = %q", got)
			}
		})
	}
	var stderr bytes.Buffer
	if err := cli.Handoff(t.Context(), []string{"--help"}, &bytes.Buffer{}, &stderr); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "onramp handoff open BUNDLE") {
		t.Errorf("help: %v", err)
	}
}
