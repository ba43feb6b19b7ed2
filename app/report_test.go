package app

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"onramp/talos/handoff"
)

// A trail edited behind Onramp's back (a file editor skips the triggers) is
// reported as not intact, with the event that broke, in the JSON and on the
// printed page; an intact one gives VerifyAudit's head.
func TestReportAuditTrail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, v := openSiteAndVault(t, dir, nil)
	if _, err := NewReport(s, NewInstall(s, nil, nil, nil, nil), v, BuildInfo{Version: "v1"}).Get(); err == nil || !strings.Contains(err.Error(), "no site yet") {
		t.Errorf("report without a site: %v", err)
	}
	if _, err := v.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	site := installSite("10.77.0.10", true)
	site.Name = "Lab <2>"
	if _, err := s.Save(site); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	inst := NewInstall(s, nil, nil, nil, nil)
	inst.vault = v
	t.Cleanup(inst.close)
	r, err := NewReport(s, inst, v, BuildInfo{Version: "v1"}).Get()
	if err != nil {
		t.Fatal(err)
	}
	db, _ := v.journal()
	seq, head, err := db.VerifyAudit(t.Context())
	if err != nil || !r.Audit.Verified || r.Audit.HeadHash != head || r.Audit.HeadSeq != seq || seq < 2 {
		t.Fatalf("intact: %+v, VerifyAudit %d %s %v", r.Audit, seq, head, err)
	}
	if r.Counts.Machines != 2 || r.Counts.NotInstalled != 2 || r.Machines[0].State != "not-installed" || r.Site.Name != "Lab <2>" || r.Site.EncryptionPCRs != "7+11" {
		t.Errorf("report: %+v %+v", r.Counts, r.Site)
	}
	v.close()

	raw, err := sql.Open("sqlite", filepath.Join(dir, "onramp.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("DROP TRIGGER audit_no_update; UPDATE audit SET detail = 'nothing happened' WHERE seq = 1"); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	s2, v2 := openSiteAndVault(t, dir, nil)
	rep := NewReport(s2, NewInstall(s2, nil, nil, nil, nil), v2, BuildInfo{Version: "v1"})
	r, err = rep.Get()
	if err != nil {
		t.Fatal(err)
	}
	if r.Audit.Verified || !strings.Contains(r.Audit.Problem, "event 1 was edited") || r.Audit.HeadSeq != seq {
		t.Errorf("tampered: %+v", r.Audit)
	}
	page, err := rep.HTML()
	if err != nil || !strings.Contains(page, "NOT intact: verify audit trail: the audit trail was altered: event 1 was edited") || !strings.Contains(page, "Lab &lt;2&gt;") {
		t.Errorf("HTML: %v", err)
	}
}

// Over the web transport: the bundle's ciphertext arrives base64 in JSON and
// opens; the report comes as HTML text; Wipe answers the new view.
func TestHandoffAndReportOverWeb(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	defer a.Close()
	a.Handoff.scryptWorkFactor = 10
	w, err := NewWeb(a, WebConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	h := w.Handler()
	if _, err := a.Site.Save(installSite("10.77.0.10", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Site.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	rec := post(t, h, "/api/call/Handoff.Export", `[{"recipients":[],"passphrase":"fleet manager phrase 7"}]`, nil)
	if rec.Code != 200 {
		t.Fatalf("export: %d %s", rec.Code, rec.Body)
	}
	var exp HandoffExport
	if err := json.Unmarshal(rec.Body.Bytes(), &exp); err != nil || len(exp.Data) == 0 {
		t.Fatalf("export answer: %v", err)
	}
	id, _ := handoff.PassphraseIdentity("fleet manager phrase 7")
	if _, err := handoff.Open(bytes.NewReader(exp.Data), id); err != nil || handoff.Hash(exp.Data) != exp.SHA256 {
		t.Errorf("bundle over the web: %v", err)
	}
	rec = post(t, h, "/api/call/Report.HTML", `[]`, nil)
	var page string
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || !strings.Contains(page, exp.SHA256) {
		t.Errorf("report HTML: %d %v", rec.Code, err)
	}
	rec = post(t, h, "/api/call/Handoff.Wipe", `[{"sha256":"`+exp.SHA256+`","copied":true}]`, nil)
	var v HandoffView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || !v.Wiped {
		t.Errorf("wipe: %d %s", rec.Code, rec.Body)
	}
}
