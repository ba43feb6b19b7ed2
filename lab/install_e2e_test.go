package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"onramp/lab/kit"
	"onramp/talos"
	"onramp/talos/node"
)

// installChildEnv carries installParams (JSON) to TestInstallChild, which
// runs inside the lab's network namespace.
const installChildEnv = "ONRAMP_LAB_INSTALL_CHILD"

// labNode is a lab machine as Onramp's netboot saw it in maintenance mode.
type labNode struct {
	Name, MAC, IP, Fingerprint string
}

type installParams struct {
	ControlPlane labNode // UEFI SecureBoot (site keys) + TPM: installs and verifies
	Worker       labNode // UEFI + TPM, SecureBoot off: refused
}

// TestLabInstallVerify installs and verifies simulated Talos nodes in real
// QEMU guests of the lab (issue 5's tests against the lab's simulator):
// lab-1 (UEFI+TPM, SecureBoot off) and lab-3 (UEFI SecureBoot with site
// keys + TPM, booted from the signed UKI) netboot from `onramp netboot` into
// maintenance mode; then, inside the lab's namespace, TestInstallChild
// generates a site for them, sees lab-1's config refused (TPM enrollment
// with SecureBoot off), installs lab-3, bootstraps it once, and verifies it.
// Set ONRAMP_LAB_E2E=1, ONRAMP_TALOSSIM to a static talossim binary and
// ONRAMP_BIN to the onramp binary (built otherwise).
func TestLabInstallVerify(t *testing.T) {
	if os.Getenv("ONRAMP_LAB_E2E") != "1" {
		t.Skip("set ONRAMP_LAB_E2E=1 (and ONRAMP_TALOSSIM) to install and verify simulated Talos nodes in the lab")
	}
	if os.Getenv("ONRAMP_TALOSSIM") == "" {
		t.Skip("set ONRAMP_TALOSSIM to a talossim binary (CGO_ENABLED=0 go build ./lab/sim/cmd/talossim)")
	}
	needRoot(t, "ip")
	needQEMU(t)
	start := time.Now()
	bin := os.Getenv("ONRAMP_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "onramp")
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "onramp")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build onramp: %v\n%s", err, out)
		}
	}
	cp := NewMachine(3, FirmwareUEFISecureBoot, KeysSite, true, 256<<20)
	w := NewMachine(1, FirmwareUEFI, "", true, 256<<20)
	ms := []Machine{w, cp}
	want := map[string]e2eWant{
		w.Name:  {StateBooted, "0", "1", true},
		cp.Name: {StateBooted, "1", "1", true},
	}
	ns := fmt.Sprintf("obi-t%06x", rand.IntN(1<<24))
	data := runMachines(t, ExecNetboot(bin), nil, 150*time.Second, ms, want, ns)
	if t.Failed() {
		t.FailNow()
	}

	// Onramp's netboot read each machine over the maintenance API and
	// logged its address and certificate fingerprint.
	var nodes map[string]labNode
	pollUntil(30*time.Second, func() bool {
		nodes = maintenanceNodes(t, data)
		return nodes[cp.MAC].Fingerprint != "" && nodes[w.MAC].Fingerprint != ""
	})
	p := installParams{ControlPlane: nodes[cp.MAC], Worker: nodes[w.MAC]}
	p.ControlPlane.Name, p.Worker.Name = cp.Name, w.Name
	for _, n := range []labNode{p.ControlPlane, p.Worker} {
		if n.IP == "" || n.Fingerprint == "" {
			t.Fatalf("%s: no talos.maintenance event with address and fingerprint in %s", n.Name, NetbootEventsFile)
		}
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestInstallChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), installChildEnv+"="+string(raw))
	out, err := cmd.CombinedOutput()
	t.Logf("install child (in %s):\n%s", ns, out)
	if err != nil {
		t.Fatalf("install child: %v", err)
	}

	// The simulator said so on its console: `lab status` shows it installed.
	var got string
	pollUntil(20*time.Second, func() bool {
		lines, _, err := Status(data)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		for _, sl := range lines {
			if sl.Name == cp.Name {
				got = sl.State
			}
		}
		return got == StateInstalled
	})
	if got != StateInstalled {
		t.Errorf("lab status: %s is %q, want %q", cp.Name, got, StateInstalled)
	} else {
		t.Logf("lab status: %s %s", cp.Name, got)
	}

	// Both nodes reported to Onramp's event sink and kernel log receiver
	// (from their command lines, then from the applied config's
	// EventSinkConfig and KmsgLogConfig); the installed one told it about
	// its install and that it runs.
	checkTalosReports(t, data, ms, map[string][]string{cp.Name: {"installing", "running"}})
	t.Logf("whole test: %s", time.Since(start).Round(100*time.Millisecond))
}

// maintenanceNodes reads the talos.maintenance events (address and pinned
// certificate fingerprint) and dhcp.ack events (address) of Onramp's netboot,
// keyed by MAC; the latest event wins.
func maintenanceNodes(t *testing.T, data string) map[string]labNode {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, NetbootEventsFile))
	if err != nil {
		t.Fatalf("read netboot events: %v", err)
	}
	nodes := map[string]labNode{}
	for _, line := range strings.Split(string(b), "\n") {
		var e struct {
			Kind, MAC, IP string
			Attrs         map[string]string
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.MAC == "" {
			continue
		}
		n := nodes[e.MAC]
		n.MAC = e.MAC
		switch e.Kind {
		case "dhcp.ack":
			if e.IP != "" {
				n.IP = e.IP
			}
		case "talos.maintenance":
			if e.IP != "" {
				n.IP = e.IP
			}
			n.Fingerprint = e.Attrs["fingerprint"]
		}
		nodes[e.MAC] = n
	}
	return nodes
}

// TestInstallChild is TestLabInstallVerify's client half, run in the lab's
// network namespace where the guests' addresses are reachable.
func TestInstallChild(t *testing.T) {
	raw := os.Getenv(installChildEnv)
	if raw == "" {
		t.Skip("runs only as TestLabInstallVerify's child inside the lab namespace")
	}
	var p installParams
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatalf("parse %s: %v", installChildEnv, err)
	}
	ctx := t.Context()
	cp, w := p.ControlPlane, p.Worker

	// 1. A site with both machines, fresh secrets, all in memory.
	genStart := time.Now()
	site := &talos.Site{
		Name:        "Onramp lab",
		Cluster:     "onramp-lab",
		Endpoint:    "https://" + cp.IP + ":6443",
		InstallDisk: &talos.DiskSelector{DevPath: "/dev/vda", MaxSize: "1GiB"},
		Network:     talos.Network{Nameservers: []string{"10.77.0.1"}},
		// Onramp's receivers in the lab's netboot (contract A)
		Events: talos.Events{Sink: "10.77.0.1:4002", Kmsg: "tcp://10.77.0.1:4001"},
		Machines: []talos.Machine{
			{MAC: cp.MAC, Role: talos.RoleControlPlane, Hostname: "cp-1"},
			{MAC: w.MAC, Role: talos.RoleWorker, Hostname: "worker-1"},
		},
	}
	if err := site.Validate(); err != nil {
		t.Fatalf("site: %v", err)
	}
	bundle, err := talos.NewSecrets(nil)
	if err != nil {
		t.Fatalf("secrets: %v", err)
	}
	gen, err := talos.NewGenerator(site, talos.WithSecrets(bundle))
	if err != nil {
		t.Fatalf("NewGenerator: %v", err)
	}
	cfgs := map[string][]byte{}
	for _, m := range site.Machines {
		if cfgs[m.MAC], err = gen.NodeConfig(m); err != nil {
			t.Fatalf("NodeConfig %s: %v", m.Hostname, err)
		}
	}
	talosconfig, err := gen.Talosconfig()
	if err != nil {
		t.Fatalf("Talosconfig: %v", err)
	}
	t.Logf("generated secrets, 2 machine configs and talosconfig in %s", time.Since(genStart).Round(time.Millisecond))

	opts := []node.Option{node.WithCallTimeout(10 * time.Second), node.WithWaitTimeout(90 * time.Second), node.WithRetry(5, time.Second)}

	// 2. lab-1 has a TPM but SecureBoot off: Talos (and the simulator)
	// refuse to enroll the TPM key under checkSecurebootStatusOnEnroll.
	t.Run("refused without SecureBoot", func(t *testing.T) {
		mc, err := node.Maintenance(ctx, w.IP, append(opts, node.WithPinnedFingerprint(w.Fingerprint))...)
		if err != nil {
			t.Fatalf("Maintenance %s: %v", w.Name, err)
		}
		defer mc.Close()
		sec, err := mc.Security(ctx)
		if err != nil {
			t.Fatalf("Security %s: %v", w.Name, err)
		}
		if sec.SecureBoot || !sec.TPMPresent {
			t.Errorf("%s reports secureBoot=%v tpm=%v, want false, true", w.Name, sec.SecureBoot, sec.TPMPresent)
		}
		err = mc.Apply(ctx, cfgs[w.MAC])
		const reason = "failed to enroll the TPM2 key, as SecureBoot is disabled (and checkSecurebootOnEnroll is enabled)"
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Fatalf("Apply %s (SecureBoot off): %v; want refusal %q", w.Name, err, reason)
		}
		t.Logf("%s refused as expected: %v", w.Name, err)
		// Still in maintenance mode: nothing was installed.
		if _, err := mc.Version(ctx); err != nil {
			t.Errorf("%s after refusal: maintenance API gone: %v", w.Name, err)
		}
	})

	// 3. lab-3 (SecureBoot with site keys + TPM) installs.
	applyStart := time.Now()
	mc, err := node.Maintenance(ctx, cp.IP, append(opts, node.WithPinnedFingerprint(cp.Fingerprint))...)
	if err != nil {
		t.Fatalf("Maintenance %s: %v", cp.Name, err)
	}
	if fp := mc.Fingerprint(); fp != cp.Fingerprint {
		t.Errorf("%s fingerprint %s, pinned %s", cp.Name, fp, cp.Fingerprint)
	}
	// A wrong pin is refused before anything is sent.
	if bad, err := node.Maintenance(ctx, cp.IP, append(opts, node.WithPinnedFingerprint(w.Fingerprint))...); err == nil {
		if _, err := bad.Version(ctx); err == nil {
			t.Errorf("%s answered with %s's fingerprint pinned", cp.Name, w.Name)
		}
		bad.Close()
	}
	if err := mc.Apply(ctx, cfgs[cp.MAC]); err != nil {
		t.Fatalf("Apply %s: %v", cp.Name, err)
	}
	mc.Close()
	t.Logf("%s: config applied in %s", cp.Name, time.Since(applyStart).Round(time.Millisecond))

	ic, err := node.Installed(ctx, cp.IP, talosconfig, opts...)
	if err != nil {
		t.Fatalf("Installed %s: %v", cp.Name, err)
	}
	defer ic.Close()
	if err := ic.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady %s: %v", cp.Name, err)
	}
	ready := time.Since(applyStart)
	t.Logf("%s: installed, answers over mTLS %s after apply", cp.Name, ready.Round(time.Millisecond))

	// A client without the site's CA cannot talk to the installed node: the
	// maintenance (no client certificate) connection is refused.
	if anon, err := node.Maintenance(ctx, cp.IP, node.WithCallTimeout(5*time.Second), node.WithRetry(1, time.Second)); err != nil {
		t.Logf("%s: client without a certificate refused: %v", cp.Name, err)
	} else {
		if _, err := anon.Version(ctx); err == nil {
			t.Errorf("%s: installed node answered a client without a certificate", cp.Name)
		} else {
			t.Logf("%s: client without a certificate refused: %v", cp.Name, err)
		}
		anon.Close()
	}

	first, err := ic.Bootstrap(ctx)
	if err != nil {
		t.Fatalf("Bootstrap %s: %v", cp.Name, err)
	}
	if first.AlreadyBootstrapped {
		t.Errorf("first Bootstrap: already bootstrapped (%s)", first.Message)
	}
	second, err := ic.Bootstrap(ctx)
	if err != nil {
		t.Fatalf("second Bootstrap %s: %v", cp.Name, err)
	}
	if !second.AlreadyBootstrapped {
		t.Errorf("second Bootstrap: want AlreadyBootstrapped, got %q", second.Message)
	}
	if err := ic.WaitHealthy(ctx); err != nil {
		t.Fatalf("WaitHealthy %s: %v", cp.Name, err)
	}
	t.Logf("%s: bootstrapped, healthy %s after apply", cp.Name, time.Since(applyStart).Round(time.Millisecond))

	vols, err := ic.Volumes(ctx)
	if err != nil {
		t.Fatalf("Volumes %s: %v", cp.Name, err)
	}
	for _, id := range []string{"STATE", "EPHEMERAL"} {
		i := slices.IndexFunc(vols, func(v node.Volume) bool { return v.ID == id })
		if i < 0 {
			t.Errorf("%s: no %s volume in %+v", cp.Name, id, vols)
			continue
		}
		v := vols[i]
		if v.EncryptionProvider != "luks2" || !slices.Contains(v.KeyTypes, "tpm") || v.Phase != "ready" {
			t.Errorf("%s %s: provider %q keys %v phase %q; want luks2, a tpm key, ready", cp.Name, id, v.EncryptionProvider, v.KeyTypes, v.Phase)
		}
	}

	// 4. Verification with the site's expected signing keys passes; a wrong
	// PCR signing key is caught with the exact reason.
	exp := node.Expected{UKISigningKeyFingerprint: kit.LabUKISigningKeyFingerprint, PCRSigningKeyFingerprint: kit.LabPCRSigningKeyFingerprint}
	ev, err := node.Verify(ctx, ic, exp)
	if err != nil {
		t.Fatalf("Verify %s: %v", cp.Name, err)
	}
	verified := time.Since(applyStart)
	if !ev.Verified || len(ev.Reasons) != 0 || !ev.SecureBoot || !ev.TPMPresent {
		t.Errorf("Verify %s: verified=%v secureBoot=%v tpm=%v reasons %q", cp.Name, ev.Verified, ev.SecureBoot, ev.TPMPresent, ev.Reasons)
	}
	const wrongPCR = "00000000000000000000000000000000000000000000000000000000000000ff"
	bad := exp
	bad.PCRSigningKeyFingerprint = wrongPCR
	ev, err = node.Verify(ctx, ic, bad)
	if err != nil {
		t.Fatalf("Verify %s (wrong PCR key): %v", cp.Name, err)
	}
	wantReason := "PCR signing-key fingerprint mismatch: node reports " + kit.LabPCRSigningKeyFingerprint + ", expected " + wrongPCR
	if ev.Verified || !slices.Equal(ev.Reasons, []string{wantReason}) {
		t.Errorf("Verify %s (wrong PCR key): verified=%v reasons %q; want not verified, %q", cp.Name, ev.Verified, ev.Reasons, wantReason)
	}

	// 5. Timings.
	t.Logf("TIMING %s: apply → installed (mTLS) %s, apply → verified %s", cp.Name, ready.Round(time.Millisecond), verified.Round(time.Millisecond))
}
