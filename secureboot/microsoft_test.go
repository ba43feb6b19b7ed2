package secureboot

import (
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite bundled and golden files")

const ovmfVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"

// TestMicrosoftBundled re-extracts Microsoft's KEK and db from Debian's OVMF
// variable store and checks the bundled copies are exactly that.
func TestMicrosoftBundled(t *testing.T) {
	t.Parallel()
	fd, err := os.ReadFile(ovmfVarsMS)
	if err != nil {
		t.Skipf("%s not readable (package ovmf): %v", ovmfVarsMS, err)
	}
	kek, db, err := ExtractMicrosoft(fd)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file  string
		lists []SignatureList
		have  []byte
	}{{"microsoft/KEK.esl", kek, microsoftKEK}, {"microsoft/db.esl", db, microsoftDB}} {
		b, err := MarshalSignatureLists(c.lists...)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(c.file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if diff := cmp.Diff(c.have, b); diff != "" {
			t.Errorf("%s differs from %s's (run with -update):\n%s", c.file, ovmfVarsMS, diff)
		}
	}
}

func TestMicrosoftCertificates(t *testing.T) {
	t.Parallel()
	subjects := func(get func() ([]SignatureList, error)) []string {
		lists, err := get()
		if err != nil {
			t.Fatal(err)
		}
		certs, err := Certificates(lists)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, c := range certs {
			s = append(s, c.Subject.CommonName)
		}
		return s
	}
	if diff := cmp.Diff([]string{"Microsoft Corporation KEK CA 2011"}, subjects(MicrosoftKEK)); diff != "" {
		t.Errorf("KEK (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Microsoft Windows Production PCA 2011", "Microsoft Corporation UEFI CA 2011"}, subjects(MicrosoftDB)); diff != "" {
		t.Errorf("db (-want +got):\n%s", diff)
	}
}
