package secureboot

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	testKeysOnce sync.Once
	testKeys     *KeySet
	testKeysErr  error
)

// keys is one generated set shared by the tests (RSA generation is slow
// under -race).
func keys(t *testing.T) *KeySet {
	t.Helper()
	testKeysOnce.Do(func() {
		testKeys, testKeysErr = GenerateKeys("Lab Site 7", Options{})
	})
	if testKeysErr != nil {
		t.Fatal(testKeysErr)
	}
	return testKeys
}

var testTime = time.Date(2026, 11, 29, 10, 11, 12, 0, time.UTC)

func TestGUID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		bytes []byte
		bad   bool
	}{
		{in: "8be4df61-93ca-11d2-aa0d-00e098032b8c", bytes: []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}},
		{in: "a5c059a1-94e4-4aa7-87b5-ab155c2bf072", bytes: []byte{0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72}},
		{in: "a5c059a194e44aa787b5ab155c2bf072", bad: true},
		{in: "a5c059a1-94e4-4aa7-87b5-ab155c2bf07", bad: true},
		{in: "z5c059a1-94e4-4aa7-87b5-ab155c2bf072", bad: true},
	}
	for _, tc := range tests {
		g, err := ParseGUID(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseGUID(%q) = %s, want error", tc.in, g)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParseGUID(%q): %v", tc.in, err)
		}
		if !bytes.Equal(g[:], tc.bytes) {
			t.Errorf("ParseGUID(%q) bytes %x, want %x", tc.in, g[:], tc.bytes)
		}
		if g.String() != tc.in {
			t.Errorf("String() = %s, want %s", g, tc.in)
		}
	}
}

func TestGenerateKeys(t *testing.T) {
	t.Parallel()
	ks := keys(t)
	seen := map[string]bool{}
	for _, k := range []*Key{ks.PK, ks.KEK, ks.DB} {
		c, err := k.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		if want := "Lab Site 7 SecureBoot " + string(k.Role); c.Subject.CommonName != want {
			t.Errorf("%s subject CN %q, want %q", k.Role, c.Subject.CommonName, want)
		}
		if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			t.Errorf("%s not self-signed: %v", k.Role, err)
		}
		if c.PublicKey.(interface{ Size() int }).Size() != 256 {
			t.Errorf("%s: not RSA-2048", k.Role)
		}
		if life := c.NotAfter.Sub(c.NotBefore); life < 19*365*24*time.Hour {
			t.Errorf("%s valid for %s only", k.Role, life)
		}
		fp := k.Fingerprint()
		if len(fp) != 64 || strings.ToLower(fp) != fp || seen[fp] {
			t.Errorf("%s fingerprint %q: want 64 lower-case hex digits, unique", k.Role, fp)
		}
		seen[fp] = true
	}
	if ks.PCR.CertDER != nil || len(ks.PCR.Fingerprint()) != 64 {
		t.Errorf("PCR key: cert %v, fingerprint %q", ks.PCR.CertDER != nil, ks.PCR.Fingerprint())
	}
	if fp := ks.Fingerprints(); fp.UKISigningKey != fp.DB {
		t.Errorf("UKI signing key fingerprint %s is not db's %s", fp.UKISigningKey, fp.DB)
	}
	if ks.Owner.String()[14] != '4' {
		t.Errorf("owner %s is not a version-4 GUID", ks.Owner)
	}

	for _, tc := range []struct {
		site string
		o    Options
	}{{"", Options{}}, {"x", Options{Bits: 1024}}, {"x", Options{Bits: 4096}}} {
		if _, err := GenerateKeys(tc.site, tc.o); err == nil {
			t.Errorf("GenerateKeys(%q, %+v): no error", tc.site, tc.o)
		}
	}
}

func TestSecretsRoundTrip(t *testing.T) {
	t.Parallel()
	ks := keys(t)
	sec := ks.Secrets()
	var names []string
	for n := range sec {
		names = append(names, n)
	}
	if diff := cmp.Diff(SecretNames(), names, cmpSorted); diff != "" {
		t.Errorf("secret names (-want +got):\n%s", diff)
	}
	back, err := KeySetFromSecrets(sec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ks.Fingerprints(), back.Fingerprints()); diff != "" {
		t.Errorf("fingerprints after round trip (-want +got):\n%s", diff)
	}
	if back.Owner != ks.Owner || back.Site != ks.Site || !back.DB.Signer.Equal(ks.DB.Signer) {
		t.Errorf("round trip lost owner/site/key")
	}
	// A certificate that does not match its key is refused.
	bad := ks.Secrets()
	bad[VaultPrefix+"db.crt"] = bad[VaultPrefix+"KEK.crt"]
	if _, err := KeySetFromSecrets(bad); err == nil {
		t.Error("mismatched db key/certificate accepted")
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestSignatureListRoundTrip(t *testing.T) {
	t.Parallel()
	ks := keys(t)
	ms, err := MicrosoftDB()
	if err != nil {
		t.Fatal(err)
	}
	in := append([]SignatureList{X509List(ks.Owner, ks.DB.CertDER)}, ms...)
	b, err := MarshalSignatureLists(in...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseSignatureLists(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out, cmp.Transformer("nilHeader", func(h []byte) []byte {
		if len(h) == 0 {
			return nil
		}
		return h
	})); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
	for _, bad := range [][]byte{b[:10], b[:len(b)-1], append(bytes.Clone(b), 0)} {
		if _, err := ParseSignatureLists(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("truncated/extended list (%d bytes): err %v, want ErrMalformed", len(bad), err)
		}
	}
}

func TestEnrollment(t *testing.T) {
	t.Parallel()
	ks := keys(t)
	pkCert, _ := ks.PK.Certificate()
	kekCert, _ := ks.KEK.Certificate()
	dbCert, _ := ks.DB.Certificate()
	msKEK, _ := MicrosoftKEK()
	msDB, _ := MicrosoftDB()
	msKEKCerts, _ := Certificates(msKEK)
	msDBCerts, _ := Certificates(msDB)
	for _, drop := range []bool{false, true} {
		e, err := ks.Enrollment(EnrollOptions{DropMicrosoft: drop, Time: testTime})
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			auth   []byte
			vendor GUID
			signer *x509.Certificate
			other  *x509.Certificate // must not verify
			want   []*x509.Certificate
		}{
			{"PK", e.PK, GlobalVariable, pkCert, kekCert, []*x509.Certificate{pkCert}},
			{"KEK", e.KEK, GlobalVariable, pkCert, kekCert, append([]*x509.Certificate{kekCert}, msKEKCerts...)},
			{"db", e.DB, ImageSecurityDatabase, kekCert, pkCert, append([]*x509.Certificate{dbCert}, msDBCerts...)},
		}
		for _, tc := range tests {
			if drop {
				tc.want = tc.want[:1]
			}
			a, err := ParseAuthVariable(tc.auth)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !a.Time.Equal(testTime) {
				t.Errorf("%s: time %s, want %s", tc.name, a.Time, testTime)
			}
			if err := a.Verify(tc.name, tc.vendor, AttrsSecureBoot, tc.signer); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			if err := a.Verify(tc.name, tc.vendor, AttrsSecureBoot, tc.other); !errors.Is(err, ErrBadSignature) {
				t.Errorf("%s verified with the wrong key: %v", tc.name, err)
			}
			if err := a.Verify(tc.name, tc.vendor, AttrsSecureBoot|AttrAppendWrite, tc.signer); !errors.Is(err, ErrBadSignature) {
				t.Errorf("%s verified with other attributes: %v", tc.name, err)
			}
			lists, err := ParseSignatureLists(a.Data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Certificates(lists)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%s (drop %v): %d certificates, want %d", tc.name, drop, len(got), len(tc.want))
			}
			for i := range got {
				if !got[i].Equal(tc.want[i]) {
					t.Errorf("%s certificate %d: %s, want %s", tc.name, i, got[i].Subject, tc.want[i].Subject)
				}
			}
			if lists[0].Signatures[0].Owner != ks.Owner {
				t.Errorf("%s: site entry owner %s, want %s", tc.name, lists[0].Signatures[0].Owner, ks.Owner)
			}
		}
	}
}

func TestParseVarStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want map[string]int // variable → number of certificates
	}{
		{"/usr/share/OVMF/OVMF_VARS_4M.ms.fd", map[string]int{"PK": 1, "KEK": 2, "db": 2}},
		{"/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd", map[string]int{"PK": 1, "KEK": 1, "db": 1}},
		{"/usr/share/OVMF/OVMF_VARS_4M.fd", map[string]int{}},
	}
	for _, tc := range tests {
		fd, err := os.ReadFile(tc.file)
		if err != nil {
			t.Skipf("%s (package ovmf): %v", tc.file, err)
		}
		vars, err := ParseVarStore(fd)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		got := map[string]int{}
		for _, v := range vars {
			if v.Name != "PK" && v.Name != "KEK" && v.Name != "db" {
				continue
			}
			lists, err := ParseSignatureLists(v.Data)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.file, v.Name, err)
			}
			certs, err := Certificates(lists)
			if err != nil {
				t.Fatal(err)
			}
			got[v.Name] = len(certs)
			if v.Attributes != AttrsSecureBoot {
				t.Errorf("%s %s attributes %#x", tc.file, v.Name, v.Attributes)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.file, diff)
		}
	}
	if _, err := ParseVarStore(make([]byte, 4096)); !errors.Is(err, ErrMalformed) {
		t.Errorf("zeros: %v, want ErrMalformed", err)
	}
}

// FuzzParseSignatureLists: whatever parses re-encodes to the same bytes.
func FuzzParseSignatureLists(f *testing.F) {
	f.Add(microsoftDB)
	f.Add(microsoftKEK)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		lists, err := ParseSignatureLists(b)
		if err != nil {
			return
		}
		out, err := MarshalSignatureLists(lists...)
		if err != nil {
			if len(lists) == 0 {
				return
			}
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, was %x", out, b)
		}
	})
}

// FuzzParseVarStore: no panic, and every variable lies inside the input.
func FuzzParseVarStore(f *testing.F) {
	if fd, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"); err == nil {
		f.Add(fd[:8192])
	}
	f.Add(make([]byte, 128))
	f.Fuzz(func(t *testing.T, b []byte) {
		vars, err := ParseVarStore(b)
		if err != nil {
			return
		}
		total := 0
		for _, v := range vars {
			total += len(v.Data)
		}
		if total > len(b) {
			t.Fatalf("%d bytes of variable data from %d bytes of input", total, len(b))
		}
	})
}

// FuzzParseAuthVariable: no panic; a parsed update's parts come from the input.
func FuzzParseAuthVariable(f *testing.F) {
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAuthVariable(b)
		if err != nil {
			return
		}
		if 40+len(a.SignedData)+len(a.Data) != len(b) {
			t.Fatalf("parts %d+%d of %d bytes", len(a.SignedData), len(a.Data), len(b))
		}
		_, _ = signerSignature(a.SignedData)
	})
}
