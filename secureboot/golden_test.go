package secureboot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// goldenKeys is a fixed key set kept in testdata/TEST-ONLY-keys (public
// test keys, never a site's: written once with -update).
func goldenKeys(t *testing.T) *KeySet {
	t.Helper()
	dir := filepath.Join("testdata", "TEST-ONLY-keys")
	if *update {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			ks, err := GenerateKeys("Golden Test Site", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range ks.Secrets() {
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	m := map[string][]byte{}
	for _, name := range SecretNames() {
		b, err := os.ReadFile(filepath.Join(dir, filepath.Base(name)))
		if err != nil {
			t.Fatalf("golden keys (run with -update once): %v", err)
		}
		m[name] = b
	}
	ks, err := KeySetFromSecrets(m)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestEnrollmentGolden: with fixed keys and time the updates are byte for
// byte what they were (RSA PKCS#1 v1.5 signatures are deterministic), so
// any change to the encoding shows up here.
func TestEnrollmentGolden(t *testing.T) {
	t.Parallel()
	ks := goldenKeys(t)
	for _, drop := range []bool{false, true} {
		e, err := ks.Enrollment(EnrollOptions{Time: testTime, DropMicrosoft: drop})
		if err != nil {
			t.Fatal(err)
		}
		suffix := ""
		if drop {
			suffix = ".no-microsoft"
		}
		for name, got := range map[string][]byte{"PK": e.PK, "KEK": e.KEK, "db": e.DB} {
			path := filepath.Join("testdata", "golden", name+suffix+".auth")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (%d vs %d bytes); rerun with -update if intended", name, path, len(got), len(want))
			}
		}
	}
}
