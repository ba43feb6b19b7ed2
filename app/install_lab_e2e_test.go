package app

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"onramp/lab/netns"
	"onramp/talos"
	"onramp/talos/node"
)

// TestInstallLabE2E drives the Install step the way the UI does, against the
// virtual lab run by the Lab service: `lab up --mix` with 3 machines gives
// lab-1 (UEFI + TPM, SecureBoot off), lab-2 (BIOS, not in the site) and lab-3
// (UEFI SecureBoot with the lab's site keys + TPM). Both lab-1 and lab-3 reach
// maintenance mode through Onramp's netboot; a site with cp-1 = lab-3 and
// worker-1 = lab-1 and the lab's image keys is saved, secrets generated, and
// Install.Start runs both over the lab's network namespace: cp-1 ends
// verified (bootstrapped once, healthy, kubeconfig held), worker-1 failed
// with Talos' refusal to enroll a TPM key with SecureBoot off.
//
//	ONRAMP_LAB_E2E=1 ONRAMP_BIN=/tmp/oin-bin/onramp ONRAMP_TALOSSIM=/tmp/oin-bin/talossim \
//	  go test ./app -run TestInstallLabE2E -v -timeout 15m
func TestInstallLabE2E(t *testing.T) {
	if os.Getenv("ONRAMP_LAB_E2E") != "1" {
		t.Skip("set ONRAMP_LAB_E2E=1, ONRAMP_BIN and ONRAMP_TALOSSIM to install and verify lab machines through the Install service")
	}
	bin, sim := os.Getenv("ONRAMP_BIN"), os.Getenv("ONRAMP_TALOSSIM")
	if bin == "" || sim == "" {
		t.Skip("set ONRAMP_BIN to an onramp binary and ONRAMP_TALOSSIM to a static talossim (CGO_ENABLED=0 go build ./lab/sim/cmd/talossim)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates a network namespace and taps")
	}
	for _, p := range LabPrereqs() {
		if !p.Present {
			t.Skipf("lab prerequisite missing: %s (%s)", p.Name, p.Hint)
		}
	}
	start := time.Now()
	ns := fmt.Sprintf("oin-%06x", rand.IntN(1<<24))
	a, err := New(Config{
		DataDir: t.TempDir(), Mode: ModeWeb, Exe: bin,
		LabNetNS: ns, LabCache: labCache(), LabSimulator: sim,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Lab.Down()
		a.Close()
		// Belt and braces: nothing of this test's lab may outlive it.
		if err := netns.Destroy(context.Background(), ns); err != nil {
			t.Errorf("destroy %s: %v", ns, err)
		}
	})

	st, err := a.Lab.Up(LabRequest{Machines: 3, Firmware: "mix"})
	if err != nil {
		t.Fatalf("Lab.Up: %v", err)
	}
	if st.ImageKeys == nil || st.ImageKeys.UKISigningKeyFingerprint == "" {
		t.Fatalf("LabStatus.ImageKeys = %+v", st.ImageKeys)
	}
	const cpMAC, wMAC = "52:54:00:77:00:03", "52:54:00:77:00:01" // lab-3, lab-1

	// Both reach maintenance mode: the netboot child read them over the
	// maintenance API (fingerprint, SecureBoot, TPM) into the registry.
	var cp, w *MachineView
	deadline := time.Now().Add(6 * time.Minute)
	for cp == nil || w == nil {
		if time.Now().After(deadline) {
			ls, _ := a.Lab.Status()
			t.Fatalf("lab machines not in maintenance mode within 6m: %+v", ls)
		}
		time.Sleep(2 * time.Second)
		if ls, _ := a.Lab.Status(); !ls.Running && !ls.Starting {
			t.Fatalf("lab stopped: %s", ls.Error)
		}
		for _, mv := range a.Machines.List() {
			if mv.Attrs["fingerprint"] == "" || mv.IP == "" {
				continue
			}
			switch {
			case equalMAC(mv.MAC, cpMAC):
				cp = &mv
			case equalMAC(mv.MAC, wMAC):
				w = &mv
			}
		}
	}
	t.Logf("maintenance after %s: cp-1 %s %s secureBoot=%s tpm=%s; worker-1 %s %s secureBoot=%s tpm=%s",
		time.Since(start).Round(time.Second), cp.IP, cp.Attrs["fingerprint"], cp.Attrs["secureBoot"], cp.Attrs["tpm"],
		w.IP, w.Attrs["fingerprint"], w.Attrs["secureBoot"], w.Attrs["tpm"])

	site := talos.Site{
		Name: "Onramp lab", Cluster: "onramp-lab", Endpoint: "https://" + cp.IP + ":6443",
		InstallDisk: &talos.DiskSelector{DevPath: "/dev/vda"},
		Network:     talos.Network{Nameservers: []string{"10.77.0.1"}},
		SecureBoot:  talos.SecureBootExpect{UKISigningKeyFingerprint: st.ImageKeys.UKISigningKeyFingerprint, PCRSigningKeyFingerprint: st.ImageKeys.PCRSigningKeyFingerprint},
		Machines: []talos.Machine{
			{MAC: cpMAC, Role: talos.RoleControlPlane, Hostname: "cp-1"},
			{MAC: wMAC, Role: talos.RoleWorker, Hostname: "worker-1"},
		},
	}
	if sv, err := a.Site.Save(site); err != nil || !sv.Ready {
		t.Fatalf("Site.Save: %v, problems %v", err, sv.Problems)
	}
	if _, err := a.Site.GenerateSecrets(); err != nil {
		t.Fatalf("GenerateSecrets: %v", err)
	}
	v, _ := a.Install.Status()
	if len(v.Blockers) != 0 || !v.Nodes[0].Ready || !v.Nodes[1].Ready || v.Nodes[1].Blocker != "SecureBoot is off: enroll the keys first" {
		t.Fatalf("before Start: %+v", v)
	}

	// A fingerprint that is not the node's is refused before anything is sent.
	if _, err := a.Install.Start(InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: w.Attrs["fingerprint"]}}}); err == nil || !strings.Contains(err.Error(), "the node changed, rediscover it") {
		t.Fatalf("Start with a wrong fingerprint = %v", err)
	}

	if _, err := a.Install.Start(InstallRequest{Machines: []InstallTarget{
		{MAC: cpMAC, Fingerprint: cp.Attrs["fingerprint"]}, {MAC: wMAC, Fingerprint: w.Attrs["fingerprint"]},
	}}); err != nil {
		t.Fatalf("Install.Start: %v", err)
	}
	deadline = time.Now().Add(5 * time.Minute)
	for {
		v, _ = a.Install.Status()
		if v.Nodes[0].State != "running" && v.Nodes[1].State != "running" {
			break
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(v, "", "  ")
			t.Fatalf("install not finished within 5m:\n%s", b)
		}
		time.Sleep(2 * time.Second)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	t.Logf("Install.Status:\n%s", b)

	n := v.Nodes[0]
	if n.State != "verified" || n.Evidence == nil || !n.Evidence.Verified {
		t.Fatalf("cp-1: state %s error %q", n.State, n.Error)
	}
	ev := n.Evidence
	if !ev.SecureBoot || !ev.TPMPresent || len(ev.Reasons) != 0 {
		t.Errorf("cp-1 evidence: secureBoot %v tpm %v reasons %q", ev.SecureBoot, ev.TPMPresent, ev.Reasons)
	}
	for _, id := range []string{"STATE", "EPHEMERAL"} {
		i := slices.IndexFunc(ev.Volumes, func(v node.Volume) bool { return v.ID == id })
		if i < 0 {
			t.Errorf("cp-1: no %s volume", id)
			continue
		}
		if vol := ev.Volumes[i]; vol.EncryptionProvider != "luks2" || !slices.Contains(vol.KeyTypes, "tpm") || vol.Phase != "ready" {
			t.Errorf("cp-1 %s: %+v, want luks2 with a tpm key, ready", id, vol)
		}
	}
	if !v.Bootstrapped || v.BootstrapNode != "cp-1" || !v.Healthy || !v.Kubeconfig {
		t.Errorf("cluster: bootstrapped %v on %q healthy %v kubeconfig %v", v.Bootstrapped, v.BootstrapNode, v.Healthy, v.Kubeconfig)
	}
	if calls := a.Install.cluster.State().BootstrapCalls; calls != 1 || n.Steps[3].Message != "etcd bootstrapped" {
		t.Errorf("bootstrap: %d RPCs, step %q; want exactly one", calls, n.Steps[3].Message)
	}
	var applyToVerified time.Duration
	for _, s := range n.Steps[1:] {
		applyToVerified += time.Duration(s.TookMs) * time.Millisecond
	}
	t.Logf("TIMING cp-1: apply → verified %s (apply %dms, install %dms, bootstrap %dms, health %dms, verify %dms)",
		applyToVerified, n.Steps[1].TookMs, n.Steps[2].TookMs, n.Steps[3].TookMs, n.Steps[4].TookMs, n.Steps[5].TookMs)

	const refusal = "failed to enroll the TPM2 key, as SecureBoot is disabled (and checkSecurebootOnEnroll is enabled)"
	if wn := v.Nodes[1]; wn.State != "failed" || wn.Step != "apply" || !strings.Contains(wn.Error, refusal) {
		t.Errorf("worker-1: state %s step %s error %q; want failed at apply with %q", wn.State, wn.Step, wn.Error, refusal)
	}

	// Verify again: the same evidence, no second bootstrap.
	if _, err := a.Install.Verify(cpMAC); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	deadline = time.Now().Add(time.Minute)
	for v, _ = a.Install.Status(); v.Nodes[0].State == "running" && time.Now().Before(deadline); v, _ = a.Install.Status() {
		time.Sleep(time.Second)
	}
	if v.Nodes[0].State != "verified" || a.Install.cluster.State().BootstrapCalls != 1 {
		t.Errorf("after Verify: %s, bootstrap RPCs %d", v.Nodes[0].State, a.Install.cluster.State().BootstrapCalls)
	}
	t.Logf("whole test: %s", time.Since(start).Round(time.Second))
}

// labCache is the shared lab download/build cache: $ONRAMP_LAB_CACHE or
// build/lab-cache at the repository root.
func labCache() string {
	if d := os.Getenv("ONRAMP_LAB_CACHE"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "build", "lab-cache")
}
