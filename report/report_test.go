package report_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"onramp/report"
	"onramp/store"
	"onramp/talos/node"
)

var update = flag.Bool("update", false, "rewrite golden files")

func at(min int) *time.Time {
	t := time.Date(2026, 11, 29, 10, min, 0, 0, time.UTC)
	return &t
}

func sample() report.Report {
	slot := 0
	r := report.Report{
		Generated: *at(59),
		Onramp:    report.Build{Version: "v0.3.0", Commit: "abc1234", Machinery: "v1.14.1"},
		Site: report.Site{Name: "St. Mary lab 2", Cluster: "stmary", ClusterID: "Q1d2", Endpoint: "https://10.77.0.10:6443",
			TalosVersion: "v1.14.1", KubernetesVersion: "1.35.0", HandoffTarget: "bundle", EncryptionPCRs: "7+11",
			UKISigningKeyFingerprint: strings.Repeat("a1", 32), PCRSigningKeyFingerprint: strings.Repeat("b2", 32)},
		Visit: report.Visit{Actors: []string{"technician"}, Started: at(1), Finished: at(40), Bootstrapped: true, BootstrapNode: "cp-1", Healthy: true},
		Machines: []report.Machine{
			{Hostname: "cp-1", Role: "controlplane", MAC: "52:54:00:00:00:11", Serial: "SN-1", IP: "10.77.0.11", State: "verified",
				Fingerprint: "FP1", ConfirmedBy: "technician", ConfirmedAt: at(1), FinishedAt: at(20), ConfigSHA256: strings.Repeat("c3", 32),
				Evidence: &node.Evidence{Node: "10.77.0.11", Verified: true, SecureBoot: true, BootedWithUKI: true, TPMPresent: true,
					UKISigningKeyFingerprint: strings.Repeat("a1", 32), PCRSigningKeyFingerprint: strings.Repeat("b2", 32), CheckedAt: *at(20),
					Volumes: []node.Volume{{ID: "STATE", Phase: "ready", EncryptionProvider: "luks2", KeyTypes: []string{"tpm"}, EncryptionSlot: &slot, TPMPCRs: []int{7}, TPMPubKeyPCRs: []int{11}}}}},
			{Hostname: "<script>alert(1)</script>", Role: "worker", MAC: "52:54:00:00:00:12", State: "not-verified", Error: "SecureBoot is off",
				Evidence: &node.Evidence{Reasons: []string{"SecureBoot is off (SecurityState.secureBoot=false)"}, CheckedAt: *at(30)}},
			{Hostname: "worker-2", Role: "worker", UUID: "0b6c", State: "not-installed"},
		},
		Handoff: &report.Handoff{ExportedAt: at(45), ExportedBy: "technician", BundleSHA256: strings.Repeat("d4", 32), Recipients: []string{"age1example"}, WipedAt: at(50), WipedBy: "technician"},
		Audit: report.Audit{Events: 3, HeadSeq: 3, HeadHash: strings.Repeat("e5", 32), Verified: true, Trail: []store.Event{
			{Seq: 1, Time: *at(0), Actor: "technician", Action: "vault.create", Detail: "vault created"},
			{Seq: 2, Time: *at(1), Actor: "technician", Action: "install.start", Subject: "52:54:00:00:00:11", Detail: `{"cluster":"Q1d2"}`},
			{Seq: 3, Time: *at(45), Actor: "technician", Action: "handoff.export", Subject: "stmary", Detail: "bundle <b>exported</b>"},
		}},
	}
	r.Count()
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update): %v", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got), run with -update if intended:\n%s", name, d)
	}
}

func TestCount(t *testing.T) {
	t.Parallel()
	r := sample()
	if d := cmp.Diff(report.Counts{Machines: 3, Verified: 1, NotVerified: 1, NotInstalled: 1}, r.Counts); d != "" {
		t.Error(d)
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	b, err := sample().JSON()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b)
	var back report.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := sample()
	want.Format = report.Format
	if d := cmp.Diff(want, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}

func TestHTML(t *testing.T) {
	t.Parallel()
	b, err := sample().HTML()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "report.html", b)
	page := string(b)
	for _, want := range []string{
		"<title>Site report · stmary · St. Mary lab 2</title>",
		`<code data-head>` + strings.Repeat("e5", 32) + `</code>`,
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		"bundle &lt;b&gt;exported&lt;/b&gt;",
		"(record)",
		"SecureBoot is off (SecurityState.secureBoot=false)",
		"1 of 3",
		"<td>7; signed: 11</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("a field was not escaped")
	}
	// Self-contained: nothing fetched from anywhere.
	for _, re := range []string{`<link\b`, `<script\b`, `<img\b`, `src=`, `url\(`, `@import`, `href=`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("page refers to an external asset: %q", m)
		}
	}
}

func TestHTMLBrokenTrail(t *testing.T) {
	t.Parallel()
	r := sample()
	r.Audit.Verified, r.Audit.Problem = false, "the audit trail was altered: event 2 was edited"
	b, err := r.HTML()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("NOT intact: the audit trail was altered: event 2 was edited")) {
		t.Error("a broken trail is not said")
	}
}
