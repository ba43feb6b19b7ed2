package app

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport/simulator"

	"onramp/lab/sim"
	"onramp/netboot"
	"onramp/talos/discover"
	"onramp/talos/node"
)

// installProcess is one Onramp process's Site, Vault, Machines and Install
// on dir (no boot services), with a low scrypt work factor.
type installProcess struct {
	site     *Site
	vault    *Vault
	machines *Machines
	install  *Install
}

func openInstallProcess(t *testing.T, dir string, addrs map[string]string) *installProcess {
	t.Helper()
	bus := NewBus()
	s, v := openSiteAndVault(t, dir, bus)
	m := NewMachines(bus)
	in := NewInstall(s, m, nil, bus, nil)
	in.vault = v
	in.nodeOpts = []node.Option{node.WithRetry(4, 50*time.Millisecond), node.WithCallTimeout(5 * time.Second), node.WithWaitTimeout(time.Minute)}
	in.addrFor = func(ip string) string { return addrs[ip] }
	t.Cleanup(in.close)
	return &installProcess{site: s, vault: v, machines: m, install: in}
}

func (p *installProcess) seen(mac, ip, fp string) {
	p.machines.Emit(netboot.Event{Time: time.Now(), Kind: discover.EventMaintenance, MAC: mac, IP: ip, Attrs: map[string]string{
		"fingerprint": fp, "secureBoot": "on", "tpm": "present", "serial": "SN-1",
	}})
}

func (p *installProcess) wait(t *testing.T, what string, done func(InstallView) bool) InstallView {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		v, _ := p.install.Status()
		if done(v) {
			return v
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(v, "", " ")
			t.Fatalf("timed out waiting for %s:\n%s", what, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node's outcome, the site's bootstrap and the kubeconfig survive a
// restart of Onramp: the evidence comes back from the audit trail, the
// kubeconfig from the vault, and verifying again never bootstraps again.
func TestInstallRecordSurvivesRestart(t *testing.T) {
	t.Parallel()
	raw, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open TPM simulator: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	cp := startSim(t, sim.Firmware{UEFI: true, SecureBoot: true}, &lockedTPM{tpm: raw}, 200*time.Millisecond)
	addrs := map[string]string{"10.77.0.11": cp.Addr().String()}
	fp := cp.Fingerprint() // the maintenance certificate's, gone once installed
	dir := t.TempDir()

	// First run: vault, site, secrets, install cp-1 (worker-1 never shows up).
	p1 := openInstallProcess(t, dir, addrs)
	if _, err := p1.vault.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.site.Save(installSite("127.0.0.1", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.site.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	p1.seen(cpMAC, "10.77.0.11", fp)
	if _, err := p1.install.Start(InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: fp}}}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	first := p1.wait(t, "cp-1 verified", func(v InstallView) bool { return v.Nodes[0].State != nodeRunning && v.Nodes[0].State != nodeIdle })
	if first.Nodes[0].State != nodeVerified || !first.Kubeconfig {
		t.Fatalf("first run: state %s error %q kubeconfig %v", first.Nodes[0].State, first.Nodes[0].Error, first.Kubeconfig)
	}
	p1.install.close()
	p1.vault.close()

	// Nothing secret in the data directory's files.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, secret := range []string{"client-certificate-data", "client-key-data", "-----BEGIN", "PRIVATE KEY"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s holds %q in plaintext", f, secret)
			}
		}
	}

	// Second run, vault unlocked, machine not yet seen again.
	p2 := openInstallProcess(t, dir, addrs)
	if _, err := p2.vault.Unlock(vaultPass); err != nil {
		t.Fatal(err)
	}
	v, _ := p2.install.Status()
	n := v.Nodes[0]
	if n.State != nodeVerified || n.Evidence == nil || !n.Evidence.Verified || n.Fingerprint != fp || n.IP != "10.77.0.11" {
		t.Errorf("restored cp-1: state %s evidence %+v fingerprint %q (want %q) ip %q", n.State, n.Evidence, n.Fingerprint, fp, n.IP)
	}
	if !strings.HasPrefix(n.Message, "recorded ") {
		t.Errorf("restored message %q", n.Message)
	}
	if v.Nodes[1].State != nodeIdle {
		t.Errorf("worker-1 restored as %s", v.Nodes[1].State)
	}
	if !v.Bootstrapped || v.BootstrapNode != "cp-1" || !v.Healthy || !v.Kubeconfig {
		t.Errorf("restored cluster: bootstrapped %v on %q healthy %v kubeconfig %v", v.Bootstrapped, v.BootstrapNode, v.Healthy, v.Kubeconfig)
	}
	if kc := p2.install.cluster.Kubeconfig(); !strings.Contains(string(kc), "client-certificate-data") {
		t.Error("kubeconfig not restored from the vault")
	}
	if _, err := p2.install.Start(InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: fp}}}); err == nil {
		t.Error("Start of a recorded installed node was accepted")
	}

	// Verify again from the record's address: verified, no bootstrap RPC.
	if _, err := p2.install.Verify(cpMAC); err != nil {
		t.Fatalf("Verify after restart: %v", err)
	}
	v = p2.wait(t, "re-verified", func(v InstallView) bool { return v.Nodes[0].State != nodeRunning })
	// The state shows before the run has written its audit row; the run
	// is over when its goroutine is.
	p2.install.wg.Wait()
	if v.Nodes[0].State != nodeVerified || p2.install.cluster.State().BootstrapCalls != 0 {
		t.Errorf("after restart, Verify: state %s error %q, bootstrap calls %d", v.Nodes[0].State, v.Nodes[0].Error, p2.install.cluster.State().BootstrapCalls)
	}

	// The audit trail holds it, chained: who confirmed which fingerprint.
	db, _ := p2.vault.journal()
	if _, _, err := db.VerifyAudit(context.Background()); err != nil {
		t.Fatalf("audit trail: %v", err)
	}
	events, err := db.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var starts, finishes int
	for _, e := range events {
		switch e.Action {
		case auditInstallStart:
			starts++
			if !strings.Contains(e.Detail, fp) {
				t.Errorf("install.start without the pinned fingerprint: %s", e.Detail)
			}
		case auditInstallFinish:
			finishes++
		}
	}
	if starts != 1 || finishes != 2 {
		t.Errorf("audit: %d install.start, %d install.finish; want 1 and 2", starts, finishes)
	}
}
