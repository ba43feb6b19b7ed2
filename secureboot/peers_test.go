package secureboot

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests hand what the package makes to tools no one here wrote:
// efitools (sig-list-to-certs, sign-efi-sig-list), openssl cms, and
// sbsign/sbverify (package sbsigntool).

func needTools(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (packages efitools openssl sbsigntool): %v", b, err)
		}
	}
}

func runTool(t *testing.T, ctx context.Context, dir string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEfitoolsReadsSignatureLists: sig-list-to-certs extracts from our
// KEK/db lists exactly the certificates we put in, in order.
func TestEfitoolsReadsSignatureLists(t *testing.T) {
	t.Parallel()
	needTools(t, "sig-list-to-certs")
	ks := keys(t)
	e, err := ks.Enrollment(EnrollOptions{Time: testTime})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		esl  []byte
	}{{"PK", e.ESLPK}, {"KEK", e.ESLKEK}, {"db", e.ESLDB}} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string][]byte{tc.name + ".esl": tc.esl})
		out, err := runTool(t, t.Context(), dir, "sig-list-to-certs", tc.name+".esl", "cert")
		if err != nil {
			t.Fatalf("sig-list-to-certs %s: %v\n%s", tc.name, err, out)
		}
		lists, _ := ParseSignatureLists(tc.esl)
		want, _ := Certificates(lists)
		for i, c := range want {
			got, err := os.ReadFile(filepath.Join(dir, "cert-"+itoa(i)+".der"))
			if err != nil {
				t.Fatalf("%s: efitools wrote no certificate %d: %v\n%s", tc.name, i, err, out)
			}
			if !bytes.Equal(got, c.Raw) {
				t.Errorf("%s certificate %d differs from what we put in", tc.name, i)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "cert-"+itoa(len(want))+".der")); err == nil {
			t.Errorf("%s: efitools found more than %d certificates", tc.name, len(want))
		}
		if !strings.Contains(out, ks.Owner.String()) {
			t.Errorf("%s: efitools did not report our owner %s:\n%s", tc.name, ks.Owner, out)
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

// TestEfitoolsSignsSamePayload: sign-efi-sig-list -o (the exact bundle to be
// signed) equals SignedPayload, and an update signed by sign-efi-sig-list
// has our header layout and verifies with AuthVariable.Verify — and ours
// verifies with openssl cms against the payload efitools computed.
func TestEfitoolsSignsSamePayload(t *testing.T) {
	t.Parallel()
	needTools(t, "sign-efi-sig-list", "openssl")
	ks := keys(t)
	e, err := ks.Enrollment(EnrollOptions{Time: testTime})
	if err != nil {
		t.Fatal(err)
	}
	pkCert, _ := ks.PK.Certificate()
	kekCert, _ := ks.KEK.Certificate()
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{
		"PK.crt": ks.PK.CertPEM(), "PK.key": ks.PK.PrivateKeyPEM(),
		"KEK.crt": ks.KEK.CertPEM(), "KEK.key": ks.KEK.PrivateKeyPEM(),
		"PK.esl": e.ESLPK, "KEK.esl": e.ESLKEK, "db.esl": e.ESLDB,
	})
	ts := testTime.Format("2006-01-02 15:04:05")
	for _, tc := range []struct {
		name   string
		vendor GUID
		ours   []byte
		signer string
	}{{"PK", GlobalVariable, e.PK, "PK"}, {"KEK", GlobalVariable, e.KEK, "PK"}, {"db", ImageSecurityDatabase, e.DB, "KEK"}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			payload := tc.name + ".payload"
			if out, err := runTool(t, ctx, dir, "sign-efi-sig-list", "-o", "-t", ts, tc.name, tc.name+".esl", payload); err != nil {
				t.Fatalf("sign-efi-sig-list -o: %v\n%s", err, out)
			}
			want, _ := os.ReadFile(filepath.Join(dir, payload))
			lists, _ := ParseSignatureLists(map[string][]byte{"PK": e.ESLPK, "KEK": e.ESLKEK, "db": e.ESLDB}[tc.name])
			data, _ := MarshalSignatureLists(lists...)
			if got := SignedPayload(tc.name, tc.vendor, AttrsSecureBoot, testTime, data); !bytes.Equal(got, want) {
				t.Fatalf("signed payload differs from efitools':\n got %x\nwant %x", got[:48], want[:min(48, len(want))])
			}

			// efitools' signed update, verified by us.
			theirs := tc.name + ".efitools.auth"
			if out, err := runTool(t, ctx, dir, "sign-efi-sig-list", "-t", ts, "-c", tc.signer+".crt", "-k", tc.signer+".key", tc.name, tc.name+".esl", theirs); err != nil {
				t.Fatalf("sign-efi-sig-list: %v\n%s", err, out)
			}
			tb, _ := os.ReadFile(filepath.Join(dir, theirs))
			ta, err := ParseAuthVariable(tb)
			if err != nil {
				t.Fatalf("parse efitools' update: %v", err)
			}
			signerCert := map[string]*x509.Certificate{"PK": pkCert, "KEK": kekCert}[tc.signer]
			if err := ta.Verify(tc.name, tc.vendor, AttrsSecureBoot, signerCert); err != nil {
				t.Errorf("efitools' update does not verify with our verifier: %v", err)
			}
			oa, _ := ParseAuthVariable(tc.ours)
			if !bytes.Equal(tb[:16], tc.ours[:16]) || !bytes.Equal(ta.Data, oa.Data) {
				t.Errorf("efitools' timestamp/data differ from ours")
			}

			// Ours, verified by openssl cms (wrapped in a ContentInfo) over
			// efitools' payload; and refused over a tampered one.
			ci, err := asn1.Marshal(struct {
				Type    asn1.ObjectIdentifier
				Content asn1.RawValue
			}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: oa.SignedData}})
			if err != nil {
				t.Fatal(err)
			}
			p7 := tc.name + ".p7"
			tampered := append(bytes.Clone(want), 0)
			writeFiles(t, dir, map[string][]byte{p7: ci, tc.name + ".tampered": tampered})
			args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", p7, "-CAfile", tc.signer + ".crt", "-purpose", "any", "-out", "/dev/null"}
			if out, err := runTool(t, ctx, dir, "openssl", append(args, "-content", payload)...); err != nil {
				t.Errorf("openssl cms -verify of our %s update: %v\n%s", tc.name, err, out)
			}
			if out, err := runTool(t, ctx, dir, "openssl", append(args, "-content", tc.name+".tampered")...); err == nil {
				t.Errorf("openssl verified our %s signature over a tampered payload:\n%s", tc.name, out)
			}
		})
	}
}

// TestSbsignWithDBKey: an image signed with the site's db key verifies with
// sbverify against the db certificate, not against the KEK's.
func TestSbsignWithDBKey(t *testing.T) {
	t.Parallel()
	needTools(t, "sbsign", "sbverify")
	const image = "/usr/lib/ipxe/ipxe.efi"
	if _, err := os.Stat(image); err != nil {
		t.Skipf("%s (package ipxe): %v", image, err)
	}
	ks := keys(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"db.key": ks.DB.PrivateKeyPEM(), "db.crt": ks.DB.CertPEM(), "KEK.crt": ks.KEK.CertPEM()})
	ctx := t.Context()
	if out, err := runTool(t, ctx, dir, "sbsign", "--key", "db.key", "--cert", "db.crt", "--output", "signed.efi", image); err != nil {
		t.Fatalf("sbsign: %v\n%s", err, out)
	}
	if out, err := runTool(t, ctx, dir, "sbverify", "--cert", "db.crt", "signed.efi"); err != nil {
		t.Errorf("sbverify with db certificate: %v\n%s", err, out)
	}
	if out, err := runTool(t, ctx, dir, "sbverify", "--cert", "KEK.crt", "signed.efi"); err == nil {
		t.Errorf("sbverify accepted the image with the KEK certificate:\n%s", out)
	}
}
