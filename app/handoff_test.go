package app

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"html"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/go-tpm/tpm2/transport/simulator"
	"golang.org/x/crypto/ssh"

	"onramp/lab/sim"
	"onramp/report"
	"onramp/talos"
	"onramp/talos/handoff"
)

func handoffServices(p *installProcess, dir string) (*Handoff, *Report) {
	rep := NewReport(p.site, p.install, p.vault, BuildInfo{Version: "v-test"})
	h := NewHandoff(dir, p.site, p.install, p.vault, rep, nil, nil)
	h.scryptWorkFactor = 10
	return h, rep
}

// secretMarkers are strings of the cluster's key material that must never
// appear in a file of the data directory in plaintext.
func secretMarkers(t *testing.T, s *Site) []string {
	t.Helper()
	s.mu.Lock()
	b := s.bundle
	s.mu.Unlock()
	if b == nil {
		t.Fatal("no bundle")
	}
	return []string{b.Cluster.Secret, b.Secrets.BootstrapToken, b.TrustdInfo.Token, b.Secrets.SecretboxEncryptionSecret,
		"PRIVATE KEY", "client-key-data", "client-certificate-data"}
}

func assertNoPlaintext(t *testing.T, dir string, markers []string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range markers {
			if m != "" && bytes.Contains(b, []byte(m)) {
				t.Errorf("%s holds %q in plaintext", p, m)
			}
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walk %s: %d files, %v", dir, n, err)
	}
}

// The whole of steps 7 and 8 against a simulated node: install cp-1, write
// the bundle for an age key and an SSH key, open it as the fleet manager
// would, wipe the secrets (refused until exported and confirmed), and the
// report still tells the full story afterwards.
func TestHandoffExportWipeReport(t *testing.T) {
	t.Parallel()
	raw, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open TPM simulator: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	cp := startSim(t, sim.Firmware{UEFI: true, SecureBoot: true}, &lockedTPM{tpm: raw}, 200*time.Millisecond)
	fp := cp.Fingerprint()
	dir := t.TempDir()
	p := openInstallProcess(t, dir, map[string]string{"10.77.0.11": cp.Addr().String()})
	h, _ := handoffServices(p, dir)

	if _, err := h.Wipe(HandoffWipeRequest{Copied: true}); err == nil || !strings.Contains(err.Error(), "no cluster secrets") {
		t.Errorf("wipe before any site: %v", err)
	}
	if _, err := p.vault.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	site := installSite("127.0.0.1", true)
	site.Name = "St. Mary <lab> 2"
	if _, err := p.site.Save(site); err != nil {
		t.Fatal(err)
	}
	if _, err := p.site.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	p.seen(cpMAC, "10.77.0.11", fp)
	if _, err := p.install.Start(InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: fp}}}); err != nil {
		t.Fatal(err)
	}
	iv := p.wait(t, "cp-1 done", func(v InstallView) bool { return v.Nodes[0].State != nodeRunning && v.Nodes[0].State != nodeIdle })
	if iv.Nodes[0].State != nodeVerified || !iv.Kubeconfig {
		t.Fatalf("install: %s %q", iv.Nodes[0].State, iv.Nodes[0].Error)
	}
	markers := secretMarkers(t, p.site)
	_, bundle := p.site.installInputs()
	id := clusterID(bundle)
	siteNow, _ := p.site.installInputs()
	gen, err := talos.NewGenerator(siteNow, talos.WithSecrets(bundle))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gen.NodeConfig(siteNow.Machines[0])
	if err != nil {
		t.Fatal(err)
	}
	wantCfgSHA := handoff.Hash(cfg)

	// Wipe is refused before a bundle was written.
	if _, err := h.Wipe(HandoffWipeRequest{Copied: true, SHA256: strings.Repeat("0", 64)}); err == nil || !strings.Contains(err.Error(), "write the handoff bundle first") {
		t.Errorf("wipe before export: %v", err)
	}
	v, _ := h.Status()
	if len(v.Blockers) != 0 || !v.Secrets || !v.Kubeconfig || v.CanWipe || v.Exported != nil {
		t.Errorf("status before export: %+v", v)
	}

	// Recipients: an age key and an SSH key; mistakes are refused.
	xid, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	sshLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " fleet@hq"
	for _, bad := range []HandoffExportRequest{
		{},
		{Recipients: []string{xid.String()}},
		{Passphrase: "short"},
		{Recipients: []string{xid.Recipient().String()}, Passphrase: "a long enough passphrase 42"},
	} {
		if _, err := h.Export(bad); err == nil {
			t.Errorf("Export(%+v) accepted", bad)
		} else if strings.Contains(err.Error(), "AGE-SECRET-KEY") {
			t.Errorf("error quotes a private key: %v", err)
		}
	}
	exp, err := h.Export(HandoffExportRequest{Recipients: []string{xid.Recipient().String() + "\n" + sshLine}})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if fi, err := os.Stat(exp.Path); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != exp.Size {
		t.Errorf("bundle file: %v %v", fi, err)
	}
	if handoff.Hash(exp.Data) != exp.SHA256 || len(exp.Recipients) != 2 || exp.Recipients[1] != strings.TrimSuffix(sshLine, " fleet@hq") {
		t.Errorf("export: sha %s recipients %q", exp.SHA256, exp.Recipients)
	}
	assertNoPlaintext(t, dir, markers)

	// The fleet manager opens it with either key.
	sshPriv, _ := ssh.MarshalPrivateKey(priv, "")
	sshIDs, err := handoff.ParseIdentities(pem.EncodeToMemory(sshPriv))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handoff.Open(bytes.NewReader(exp.Data), sshIDs...); err != nil {
		t.Errorf("open with the SSH key: %v", err)
	}
	o, err := handoff.Open(bytes.NewReader(exp.Data), xid)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if o.Manifest.ClusterID != id || o.Manifest.Cluster != "lab" {
		t.Errorf("manifest: %+v", o.Manifest)
	}
	for _, name := range []string{"talosconfig", "kubeconfig", "secrets.yaml", "inventory.json", "report.json", "report.html"} {
		if _, ok := o.File(name); !ok {
			t.Errorf("bundle lacks %s", name)
		}
	}
	sy, _ := o.File("secrets.yaml")
	if b, err := talos.UnmarshalSecrets(sy, nil); err != nil || b.Cluster.ID != id {
		t.Errorf("secrets.yaml: %v", err)
	}
	if kc, _ := o.File("kubeconfig"); !bytes.Contains(kc, []byte("client-certificate-data")) {
		t.Error("kubeconfig is not the admin kubeconfig")
	}
	if tc, _ := o.File("talosconfig"); !bytes.Contains(tc, []byte("contexts:")) {
		t.Error("talosconfig is not one")
	}
	var inv struct {
		ClusterID string           `json:"clusterId"`
		Machines  []report.Machine `json:"machines"`
	}
	ib, _ := o.File("inventory.json")
	if err := json.Unmarshal(ib, &inv); err != nil || inv.ClusterID != id || len(inv.Machines) != 2 {
		t.Fatalf("inventory: %v %s", err, ib)
	}
	if m := inv.Machines[0]; m.Hostname != "cp-1" || m.Fingerprint != fp || m.State != nodeVerified || m.Serial != "SN-1" ||
		m.IP != "10.77.0.11" || m.Evidence == nil || !m.Evidence.Verified || m.ConfigSHA256 != wantCfgSHA {
		t.Errorf("inventory cp-1: %+v (want config sha %s)", m, wantCfgSHA)
	}
	if inv.Machines[1].State != "not-installed" {
		t.Errorf("worker-1: %+v", inv.Machines[1])
	}

	// Wipe: the confirmation must name this bundle and say it was copied.
	v, _ = h.Status()
	if !v.CanWipe || v.Exported == nil || v.Exported.SHA256 != exp.SHA256 {
		t.Errorf("status after export: %+v", v)
	}
	if _, err := h.Wipe(HandoffWipeRequest{SHA256: exp.SHA256}); err == nil || !strings.Contains(err.Error(), "copied") {
		t.Errorf("wipe without copied: %v", err)
	}
	if _, err := h.Wipe(HandoffWipeRequest{SHA256: strings.Repeat("ab", 32), Copied: true}); err == nil || !strings.Contains(err.Error(), "not the last one written") {
		t.Errorf("wipe with another bundle's hash: %v", err)
	}
	again, err := h.Bundle()
	if err != nil || !bytes.Equal(again.Data, exp.Data) {
		t.Errorf("Bundle: %v", err)
	}
	v, err = h.Wipe(HandoffWipeRequest{SHA256: strings.ToUpper(exp.SHA256), Copied: true})
	if err != nil {
		t.Fatalf("Wipe: %v", err)
	}
	if !v.Wiped || v.Secrets || v.CanWipe || len(v.Blockers) == 0 || v.Blockers[0] != blockHandoffWiped {
		t.Errorf("status after wipe: %+v", v)
	}
	ctx := context.Background()
	db, sv := p.vault.journal()
	names, _ := sv.Names(ctx)
	for _, n := range names {
		if strings.HasPrefix(n, secretBundle) || n == kubeconfigSecret(id) {
			t.Errorf("vault still holds %s", n)
		}
	}
	if sv, _ := p.site.Get(); sv.Secrets {
		t.Error("site still holds the secrets")
	}
	p.install.mu.Lock()
	if p.install.in != nil || p.install.cluster != nil || p.install.bundle != nil {
		t.Error("install still holds the talosconfig or kubeconfig")
	}
	p.install.mu.Unlock()
	if _, err := h.Wipe(HandoffWipeRequest{SHA256: exp.SHA256, Copied: true}); err == nil || !strings.Contains(err.Error(), "already wiped") {
		t.Errorf("second wipe: %v", err)
	}
	if _, err := h.Export(HandoffExportRequest{Recipients: []string{xid.Recipient().String()}}); err == nil {
		t.Error("export after wipe accepted")
	}
	assertNoPlaintext(t, dir, markers)

	// After a restart (vault unlocked again), nothing comes back.
	p.install.close()
	p.vault.close()
	p2 := openInstallProcess(t, dir, nil)
	if _, err := p2.vault.Unlock(vaultPass); err != nil {
		t.Fatal(err)
	}
	if sv, _ := p2.site.Get(); sv.Secrets {
		t.Error("secrets came back after a restart")
	}
	h2, rep2 := handoffServices(p2, dir)
	if v, _ := h2.Status(); !v.Wiped || v.ClusterID != id || v.Exported == nil || v.Exported.SHA256 != exp.SHA256 {
		t.Errorf("status after restart: %+v", v)
	}
	// New secrets under the handed-off cluster's name are refused.
	p2.site.handedOff = h2.wipedAt
	if _, err := p2.site.GenerateSecrets(); err == nil || !strings.Contains(err.Error(), "was handed off") {
		t.Errorf("GenerateSecrets for the wiped cluster's name: %v", err)
	}

	// The report is complete after the wipe.
	r, err := rep2.Get()
	if err != nil {
		t.Fatal(err)
	}
	db, _ = p2.vault.journal()
	seq, head, err := db.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Site.ClusterID != id || !r.Audit.Verified || r.Audit.HeadHash != head || r.Audit.HeadSeq != seq || r.Audit.Events != int(seq) {
		t.Errorf("report audit: %+v (head %d %s)", r.Audit, seq, head)
	}
	if r.Counts != (report.Counts{Machines: 2, Verified: 1, NotInstalled: 1}) {
		t.Errorf("counts %+v", r.Counts)
	}
	if m := r.Machines[0]; m.ConfigSHA256 != wantCfgSHA || m.Fingerprint != fp || m.ConfirmedBy != "technician" || m.ConfirmedAt == nil || m.Evidence == nil || len(m.Evidence.Volumes) == 0 {
		t.Errorf("report cp-1: %+v", m)
	}
	if r.Handoff == nil || r.Handoff.BundleSHA256 != exp.SHA256 || r.Handoff.WipedAt == nil || len(r.Handoff.Recipients) != 2 {
		t.Errorf("report handoff: %+v", r.Handoff)
	}
	if !r.Visit.Bootstrapped || r.Visit.BootstrapNode != "cp-1" || r.Visit.Started == nil || r.Onramp.Version != "v-test" {
		t.Errorf("report visit: %+v %+v", r.Visit, r.Onramp)
	}
	page, err := rep2.HTML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, "St. Mary &lt;lab&gt; 2") {
		t.Error("HTML report: the site name is not escaped")
	}
	for _, want := range []string{head, "St. Mary <lab> 2", fp, wantCfgSHA, exp.SHA256} {
		if !strings.Contains(html.UnescapeString(page), want) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	js, err := rep2.JSON()
	if err != nil || !strings.Contains(js, `"headHash": "`+head+`"`) {
		t.Errorf("JSON report: %v", err)
	}

	// The trail: export with the hash and the public keys, then the wipe.
	events, _ := db.Audit(ctx)
	var actions []string
	for _, e := range events {
		if strings.HasPrefix(e.Action, "handoff.") {
			actions = append(actions, e.Action)
			if e.Action == auditHandoffExport && (!strings.Contains(e.Detail, exp.SHA256) || !strings.Contains(e.Detail, xid.Recipient().String()) || !strings.Contains(e.Detail, "ssh-ed25519 ")) {
				t.Errorf("export event: %s", e.Detail)
			}
			if e.Action == auditHandoffWipe && !strings.Contains(e.Detail, secretBundle) {
				t.Errorf("wipe event: %s", e.Detail)
			}
		}
	}
	if strings.Join(actions, ",") != "handoff.export,handoff.wipe" {
		t.Errorf("handoff events %v", actions)
	}
	assertNoPlaintext(t, dir, markers)
}

// Without a fleet key: a passphrase bundle; without a kubeconfig (nothing
// installed yet) the bundle holds the rest and says so.
func TestHandoffPassphraseBundle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := openInstallProcess(t, dir, nil)
	h, _ := handoffServices(p, dir)
	if _, err := p.site.Save(installSite("127.0.0.1", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.vault.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	if _, err := p.site.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	v, _ := h.Status()
	if v.Kubeconfig || strings.Contains(strings.Join(v.Contents, ","), "kubeconfig") || len(v.Blockers) != 0 {
		t.Errorf("status: %+v", v)
	}
	if _, err := h.Export(HandoffExportRequest{Passphrase: "aaaaaaaaaaaaaaaa"}); err == nil {
		t.Error("weak passphrase accepted")
	}
	const pass = "fleet manager gets this by phone 7"
	exp, err := h.Export(HandoffExportRequest{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Passphrase || len(exp.Recipients) != 0 {
		t.Errorf("export %+v", exp)
	}
	id, _ := handoff.PassphraseIdentity(pass)
	o, err := handoff.Open(bytes.NewReader(exp.Data), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := o.File("kubeconfig"); ok {
		t.Error("a kubeconfig that was never fetched is in the bundle")
	}
	wrong, _ := handoff.PassphraseIdentity("not the passphrase at all")
	if _, err := handoff.Open(bytes.NewReader(exp.Data), wrong); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("wrong passphrase: %v", err)
	}
	if !regexp.MustCompile(`^lab-handoff-\d{8}-\d{6}\.age$`).MatchString(exp.Name) {
		t.Errorf("name %q", exp.Name)
	}
	// Locked vault: the secrets are not in memory, and the step says why.
	if _, err := p.vault.Lock(); err != nil {
		t.Fatal(err)
	}
	v, _ = h.Status()
	if len(v.Blockers) == 0 || v.Blockers[0] != blockHandoffLocked {
		t.Errorf("locked: %+v", v.Blockers)
	}
	if _, err := h.Wipe(HandoffWipeRequest{SHA256: exp.SHA256, Copied: true}); err == nil || !strings.Contains(err.Error(), "Unlock the vault") {
		t.Errorf("wipe while locked: %v", err)
	}
	if _, err := h.Export(HandoffExportRequest{Passphrase: pass}); err == nil || !strings.Contains(err.Error(), "Unlock the vault") {
		t.Errorf("export while locked: %v", err)
	}
}
