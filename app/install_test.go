package app

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"onramp/lab/kit"
	"onramp/lab/netns"
	"onramp/lab/sim"
	"onramp/lab/sim/simtest"
	"onramp/netboot"
	"onramp/talos"
	"onramp/talos/discover"
	"onramp/talos/node"
)

const (
	cpMAC = "52:54:00:77:00:11"
	wMAC  = "52:54:00:77:00:21"
)

func installSite(endpointHost string, keys bool) talos.Site {
	s := talos.Site{
		Cluster:     "lab",
		Endpoint:    "https://" + endpointHost + ":6443",
		InstallDisk: &talos.DiskSelector{DevPath: "/dev/vda"},
		Machines: []talos.Machine{
			{MAC: cpMAC, Role: talos.RoleControlPlane, Hostname: "cp-1"},
			{MAC: wMAC, Role: talos.RoleWorker, Hostname: "worker-1"},
		},
	}
	if keys {
		s.SecureBoot = talos.SecureBootExpect{UKISigningKeyFingerprint: kit.LabUKISigningKeyFingerprint, PCRSigningKeyFingerprint: kit.LabPCRSigningKeyFingerprint}
	}
	return s
}

// seen puts a machine into the registry as discovery does in maintenance mode.
func seen(a *App, mac, ip, fp, secureBoot string) {
	a.Machines.Emit(netboot.Event{Time: time.Now(), Kind: discover.EventMaintenance, MAC: mac, IP: ip, Attrs: map[string]string{
		"fingerprint": fp, "secureBoot": secureBoot, "tpm": "present", "serial": "SN-" + mac[len(mac)-2:],
	}})
}

// The step refuses to start until the site is complete, and refuses a node whose
// fingerprint changed, before anything touches a node.
func TestInstallBlockersAndRefusals(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	t.Cleanup(a.Close)

	v, _ := a.Install.Status()
	if d := cmp.Diff([]string{blockNoSite}, v.Blockers); d != "" || len(v.Nodes) != 0 {
		t.Errorf("no site: blockers (-want +got):\n%s nodes %d", d, len(v.Nodes))
	}

	if _, err := a.Site.Save(installSite("10.77.0.11", false)); err != nil {
		t.Fatal(err)
	}
	v, _ = a.Install.Status()
	if d := cmp.Diff([]string{blockNoSecrets, blockNoImageKeys}, v.Blockers); d != "" {
		t.Errorf("site without secrets and keys: blockers (-want +got):\n%s", d)
	}
	if _, err := a.Install.Start(InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: "x"}}}); err == nil || !strings.Contains(err.Error(), blockNoSecrets) {
		t.Errorf("Start with blockers = %v", err)
	}

	if _, err := a.Site.Save(installSite("10.77.0.11", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Site.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	seen(a, cpMAC, "10.77.0.11", "fp-cp", "on")
	seen(a, "52:54:00:77:00:99", "10.77.0.99", "fp-other", "on") // not a site machine

	v, _ = a.Install.Status()
	if len(v.Blockers) != 0 {
		t.Errorf("blockers = %q, want none", v.Blockers)
	}
	want := []InstallNode{
		{MAC: cpMAC, Hostname: "cp-1", Role: "controlplane", IP: "10.77.0.11", Serial: "SN-11", SecureBoot: "on", TPM: "present", Fingerprint: "fp-cp", Ready: true, State: "idle", Steps: pendingSteps()},
		{MAC: wMAC, Hostname: "worker-1", Role: "worker", Blocker: "Not seen on the network yet", State: "idle", Steps: pendingSteps()},
	}
	if d := cmp.Diff(want, v.Nodes); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	if got := v.Nodes[0].Steps; got[0].Title != "Generate config" || got[5].Name != "verify" {
		t.Errorf("steps = %+v", got)
	}

	seen(a, wMAC, "10.77.0.12", "fp-w", "off")
	v, _ = a.Install.Status()
	if n := v.Nodes[1]; !n.Ready || n.Blocker != "SecureBoot is off: enroll the keys first" {
		t.Errorf("SecureBoot-off node: ready %v blocker %q, want a warning and still allowed", n.Ready, n.Blocker)
	}

	for _, tt := range []struct {
		name string
		req  InstallRequest
		want string
	}{
		{"empty", InstallRequest{}, "choose at least one machine"},
		{"not in site", InstallRequest{Machines: []InstallTarget{{MAC: "52:54:00:77:00:99", Fingerprint: "fp-other"}}}, "not a machine of the site"},
		{"no fingerprint", InstallRequest{Machines: []InstallTarget{{MAC: cpMAC}}}, "confirm the certificate fingerprint"},
		{"wrong fingerprint", InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: "fp-old"}}}, "install cp-1: the node's certificate fingerprint is now fp-cp, not the fp-old you confirmed: the node changed, rediscover it"},
		{"one bad refuses all", InstallRequest{Machines: []InstallTarget{{MAC: wMAC, Fingerprint: "fp-w"}, {MAC: cpMAC, Fingerprint: "fp-old"}}}, "the node changed"},
		{"twice", InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: "fp-cp"}, {MAC: strings.ToUpper(cpMAC), Fingerprint: "fp-cp"}}}, "listed twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Install.Start(tt.req); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want %q", err, tt.want)
			}
		})
	}
	v, _ = a.Install.Status()
	for _, n := range v.Nodes {
		if n.State != "idle" {
			t.Errorf("%s state %s after refused requests, want idle", n.Hostname, n.State)
		}
	}
	if _, err := a.Install.Cancel(cpMAC); err == nil || !strings.Contains(err.Error(), "nothing is running") {
		t.Errorf("Cancel idle = %v", err)
	}
	if _, err := a.Install.Verify(cpMAC); err == nil || !strings.Contains(err.Error(), "install it first") {
		t.Errorf("Verify idle = %v", err)
	}
}

// lockedTPM lets two simulated nodes share the one TPM simulator a process can have.
type lockedTPM struct {
	mu  sync.Mutex
	tpm transport.TPM
}

func (l *lockedTPM) Send(cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tpm.Send(cmd)
}

func startSim(t *testing.T, fw sim.Firmware, tpm transport.TPM, installDelay time.Duration) *sim.Sim {
	t.Helper()
	cfg := simtest.Config(t, t.TempDir(), fw, tpm)
	cfg.UKISigningKeyFingerprint, cfg.PCRSigningKeyFingerprint = kit.LabUKISigningKeyFingerprint, kit.LabPCRSigningKeyFingerprint
	cfg.InstallDelay, cfg.EtcdStartDelay = installDelay, 300*time.Millisecond
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	simtest.Start(t, s)
	return s
}

func waitInstall(t *testing.T, a *App, what string, timeout time.Duration, done func(InstallView) bool) InstallView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, _ := a.Install.Status()
		if done(v) {
			return v
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(v, "", "  ")
			t.Fatalf("%s: not within %s; view:\n%s", what, timeout, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The service against two in-process Talos simulators: the SecureBoot control
// plane is installed, bootstrapped once, healthy, verified, and its kubeconfig is
// held but never published; a second node is cancelled while it installs.
func TestInstallAgainstSimulators(t *testing.T) {
	t.Parallel()
	raw, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open TPM simulator: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	tpm := &lockedTPM{tpm: raw}
	cp := startSim(t, sim.Firmware{UEFI: true, SecureBoot: true}, tpm, 200*time.Millisecond)
	slow := startSim(t, sim.Firmware{UEFI: true, SecureBoot: true}, tpm, time.Hour) // never comes back from "install"

	a := newTestApp(t)
	t.Cleanup(a.Close)
	a.Install.nodeOpts = []node.Option{node.WithRetry(4, 50*time.Millisecond), node.WithCallTimeout(5 * time.Second), node.WithWaitTimeout(time.Minute)}
	addrs := map[string]string{"10.77.0.11": cp.Addr().String(), "10.77.0.12": slow.Addr().String()}
	a.Install.addrFor = func(ip string) string { return addrs[ip] }

	site := installSite("127.0.0.1", true)
	if _, err := a.Site.Save(site); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Site.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	seen(a, cpMAC, "10.77.0.11", cp.Fingerprint(), "on")
	seen(a, wMAC, "10.77.0.12", slow.Fingerprint(), "on")

	events, unsubscribe := a.Bus.Subscribe()
	var published []string
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for m := range events {
			if m.Name == "install:changed" {
				b, _ := json.Marshal(m.Data)
				published = append(published, string(b))
			}
		}
	}()

	start := time.Now()
	v, err := a.Install.Start(InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: cp.Fingerprint()}, {MAC: wMAC, Fingerprint: slow.Fingerprint()}}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if v.Nodes[0].State != "running" || v.Nodes[1].State != "running" {
		t.Errorf("states after Start: %s, %s", v.Nodes[0].State, v.Nodes[1].State)
	}
	if _, err := a.Install.Start(InstallRequest{Machines: []InstallTarget{{MAC: cpMAC, Fingerprint: cp.Fingerprint()}}}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Start = %v, want already running", err)
	}

	// The slow node waits in "install": cancel it.
	waitInstall(t, a, "worker installing", 30*time.Second, func(v InstallView) bool {
		return v.Nodes[1].Step == "install" && v.Nodes[1].Steps[1].State == "done"
	})
	v, err = a.Install.Cancel(wMAC)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if n := v.Nodes[1]; n.State != "cancelled" || n.Steps[2].State != "failed" || n.Error != "Cancelled during install" || !strings.HasPrefix(n.Steps[2].Message, "cancelled: context canceled") || n.FinishedAt == nil {
		t.Errorf("after Cancel: state %s, install step %+v, error %q", n.State, n.Steps[2], n.Error)
	}

	v = waitInstall(t, a, "control plane verified", time.Minute, func(v InstallView) bool { return v.Nodes[0].State != "running" })
	n := v.Nodes[0]
	if n.State != "verified" || n.Evidence == nil || !n.Evidence.Verified || n.Error != "" {
		t.Fatalf("control plane: state %s error %q evidence %+v", n.State, n.Error, n.Evidence)
	}
	t.Logf("in-process: start → verified %s", time.Since(start).Round(time.Millisecond))
	if !v.Bootstrapped || v.BootstrapNode != "cp-1" || !v.Healthy || !v.Kubeconfig {
		t.Errorf("cluster: bootstrapped %v on %q, healthy %v, kubeconfig %v", v.Bootstrapped, v.BootstrapNode, v.Healthy, v.Kubeconfig)
	}
	for _, s := range n.Steps {
		if s.State != "done" {
			t.Errorf("step %s: %s %q", s.Name, s.State, s.Message)
		}
	}
	if n.Steps[3].Message != "etcd bootstrapped" {
		t.Errorf("bootstrap step message %q", n.Steps[3].Message)
	}
	if st := a.Install.cluster.State(); st.BootstrapCalls != 1 {
		t.Errorf("Bootstrap RPCs = %d, want 1", st.BootstrapCalls)
	}
	if kc := a.Install.cluster.Kubeconfig(); !strings.Contains(string(kc), "client-certificate-data") {
		t.Error("kubeconfig not held in memory")
	}

	// Verify again: still verified, no second bootstrap.
	if _, err := a.Install.Verify(cpMAC); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	v = waitInstall(t, a, "re-verified", 30*time.Second, func(v InstallView) bool { return v.Nodes[0].State != "running" })
	if v.Nodes[0].State != "verified" || a.Install.cluster.State().BootstrapCalls != 1 {
		t.Errorf("after Verify: state %s, bootstrap calls %d", v.Nodes[0].State, a.Install.cluster.State().BootstrapCalls)
	}

	unsubscribe()
	<-collected
	if len(published) < 10 {
		t.Errorf("install:changed published %d times, want every step", len(published))
	}
	for _, p := range published {
		for _, secret := range []string{"client-certificate-data", "BEGIN", "client-key"} {
			if strings.Contains(p, secret) {
				t.Fatalf("install:changed carries %q", secret)
			}
		}
	}
	var last InstallView
	if err := json.Unmarshal([]byte(published[len(published)-1]), &last); err != nil || len(last.Nodes) != 2 {
		t.Errorf("install:changed payload: %v", err)
	}
}

// A machine the site knows by SMBIOS UUID only is shown with the MAC it was
// discovered with, and that MAC installs it.
func TestInstallMachineByUUID(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	t.Cleanup(a.Close)
	site := installSite("10.77.0.11", true)
	site.Machines[1] = talos.Machine{UUID: "0a770000-0000-4000-8000-000000000002", Role: talos.RoleWorker, Hostname: "worker-1"}
	if _, err := a.Site.Save(site); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Site.GenerateSecrets(); err != nil {
		t.Fatal(err)
	}
	a.Machines.Emit(netboot.Event{Time: time.Now(), Kind: discover.EventMaintenance, MAC: "52:54:00:77:00:02", IP: "10.77.0.12", Attrs: map[string]string{
		"fingerprint": "fp-w", "uuid": "0A770000-0000-4000-8000-000000000002", "secureBoot": "on", "tpm": "present",
	}})
	v, _ := a.Install.Status()
	if n := v.Nodes[1]; n.MAC != "52:54:00:77:00:02" || n.UUID != site.Machines[1].UUID || !n.Ready || n.Fingerprint != "fp-w" {
		t.Errorf("UUID machine: %+v", n)
	}
	// Found by its MAC: refused for the fingerprint, not as unknown.
	if _, err := a.Install.Start(InstallRequest{Machines: []InstallTarget{{MAC: "52:54:00:77:00:02", Fingerprint: "fp-x"}}}); err == nil || !strings.Contains(err.Error(), "install worker-1: the node's certificate fingerprint is now fp-w") {
		t.Errorf("Start by discovered MAC = %v", err)
	}
}

// netnsDialer's sockets live in the namespace: a listener only the namespace has
// is reached, and the same address from the host's namespace is not.
func TestNetnsDialer(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ns := fmt.Sprintf("oin-d%06x", rand.IntN(1<<24))
	if err := exec.Command("ip", "netns", "add", ns).Run(); err != nil {
		t.Skipf("ip netns add: %v", err)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	var ln net.Listener
	if err := netns.Do(ns, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("inside"))
			c.Close()
		}
	}()
	c, err := netnsDialer(ns)(t.Context(), ln.Addr().String())
	if err != nil {
		t.Fatalf("dial in %s: %v", ns, err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "inside" {
		t.Errorf("read %q from the namespace's listener", b)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) == "inside" {
			t.Error("the namespace's listener answered from the host namespace")
		}
	}
	if _, err := netnsDialer(ns+"-gone")(t.Context(), ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "-gone") {
		t.Errorf("dial in a missing namespace = %v", err)
	}
}

func TestSameCluster(t *testing.T) {
	t.Parallel()
	a := &secrets.Bundle{Cluster: &secrets.Cluster{ID: "id-a"}}
	a2 := &secrets.Bundle{Cluster: &secrets.Cluster{ID: "id-a"}} // loaded again from the vault
	b := &secrets.Bundle{Cluster: &secrets.Cluster{ID: "id-b"}}
	for _, tt := range []struct {
		name string
		x, y *secrets.Bundle
		want bool
	}{
		{"same value", a, a, true},
		{"same cluster ID", a, a2, true},
		{"other cluster", a, b, false},
		{"none yet", nil, a, false},
		{"no IDs", &secrets.Bundle{}, &secrets.Bundle{}, false},
	} {
		if got := sameCluster(tt.x, tt.y); got != tt.want {
			t.Errorf("%s: sameCluster = %v, want %v", tt.name, got, tt.want)
		}
	}
}
