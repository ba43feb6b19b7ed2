package node_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"onramp/lab/sim"
	"onramp/lab/sim/simtest"
	"onramp/talos/node"
)

var (
	secureBootOn  = sim.Firmware{UEFI: true, SecureBoot: true}
	secureBootOff = sim.Firmware{UEFI: true}
	siteKeys      = node.Expected{UKISigningKeyFingerprint: "uki-fpr-site", PCRSigningKeyFingerprint: "pcr-fpr-site"}
)

// openTPM opens the go-tpm-tools TPM simulator (one per process at a time: tests
// that need it queue here) and closes it after the test's simulators stopped.
func openTPM(t *testing.T) transport.TPMCloser {
	t.Helper()

	tpm, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open TPM simulator: %v", err)
	}

	t.Cleanup(func() { tpm.Close() })

	return tpm
}

// startNode runs a simulator with state in dir; cleanups run before the TPM closes.
func startNode(t *testing.T, dir string, fw sim.Firmware, tpm transport.TPM) *sim.Sim {
	t.Helper()

	cfg := simtest.Config(t, dir, fw, tpm)
	cfg.InstallDelay = 200 * time.Millisecond
	cfg.EtcdStartDelay = 300 * time.Millisecond

	s, err := sim.New(cfg)
	if err != nil {
		t.Fatalf("new simulator: %v", err)
	}

	simtest.Start(t, s)

	return s
}

func fast() []node.Option {
	return []node.Option{node.WithRetry(4, 50*time.Millisecond), node.WithCallTimeout(5 * time.Second), node.WithWaitTimeout(30 * time.Second)}
}

func TestMaintenanceReadsNodeFacts(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	s := startNode(t, t.TempDir(), secureBootOn, tpm)
	addr := s.Addr().String()

	tests := []struct {
		name    string
		pin     string
		wantErr string
	}{
		{name: "no pin"},
		{name: "pinned", pin: s.Fingerprint()},
		{name: "wrong pin", pin: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", wantErr: "certificate fingerprint mismatch: node shows " + s.Fingerprint() + ", expected AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := fast()
			if tt.pin != "" {
				opts = append(opts, node.WithPinnedFingerprint(tt.pin))
			}

			c, err := node.Maintenance(t.Context(), addr, opts...)
			if tt.wantErr != "" {
				var mm *node.FingerprintMismatchError
				if err == nil || err.Error() != tt.wantErr || !errors.As(err, &mm) {
					t.Fatalf("Maintenance error = %v, want %q", err, tt.wantErr)
				}

				return
			}

			if err != nil {
				t.Fatalf("Maintenance: %v", err)
			}
			defer c.Close()

			if c.Fingerprint() != s.Fingerprint() {
				t.Errorf("Fingerprint() = %s, node printed %s", c.Fingerprint(), s.Fingerprint())
			}

			v, err := c.Version(t.Context())
			if err != nil {
				t.Fatalf("Version: %v", err)
			}

			if v.Tag != "v1.14.1" || v.Platform != "metal" {
				t.Errorf("Version = %+v", v)
			}

			hw, err := c.Hardware(t.Context())
			if err != nil {
				t.Fatalf("Hardware: %v", err)
			}

			want := node.Hardware{Vendor: simtest.Hardware.Manufacturer, Product: simtest.Hardware.Product, Serial: simtest.Hardware.Serial, UUID: simtest.Hardware.UUID}
			if d := cmp.Diff(want, hw); d != "" {
				t.Errorf("Hardware (-want +got):\n%s", d)
			}

			disks, err := c.Disks(t.Context())
			if err != nil {
				t.Fatalf("Disks: %v", err)
			}

			wantDisks := []node.Disk{
				{ID: "sr0", DevPath: "/dev/sr0", Model: "QEMU DVD-ROM", Transport: "scsi", CDROM: true},
				{ID: "vda", DevPath: "/dev/vda", Size: 8 << 30, Serial: "disk-0001", Transport: "virtio"},
			}
			if d := cmp.Diff(wantDisks, disks); d != "" {
				t.Errorf("Disks (-want +got):\n%s", d)
			}

			links, err := c.Links(t.Context())
			if err != nil {
				t.Fatalf("Links: %v", err)
			}

			if d := cmp.Diff([]node.Link{{Name: "eth0", MAC: "52:54:00:77:00:10", LinkUp: true}}, links); d != "" {
				t.Errorf("Links (-want +got):\n%s", d)
			}

			sec, err := c.Security(t.Context())
			if err != nil {
				t.Fatalf("Security: %v", err)
			}

			wantSec := node.Security{SecureBoot: true, UKISigningKeyFingerprint: "uki-fpr-site", PCRSigningKeyFingerprint: "pcr-fpr-site", BootedWithUKI: true, TPMPresent: true}
			if d := cmp.Diff(wantSec, sec); d != "" {
				t.Errorf("Security (-want +got):\n%s", d)
			}
		})
	}
}

func TestNoTPMNoSecureBoot(t *testing.T) {
	t.Parallel()

	s := startNode(t, t.TempDir(), sim.Firmware{}, nil)

	c, err := node.Maintenance(t.Context(), s.Addr().String(), fast()...)
	if err != nil {
		t.Fatalf("Maintenance: %v", err)
	}
	defer c.Close()

	sec, err := c.Security(t.Context())
	if err != nil {
		t.Fatalf("Security: %v", err)
	}

	want := node.Security{UKISigningKeyFingerprint: "uki-fpr-site", PCRSigningKeyFingerprint: "pcr-fpr-site"}
	if d := cmp.Diff(want, sec); d != "" {
		t.Errorf("Security (-want +got):\n%s", d)
	}

	// TPM encryption without a TPM is refused
	site := simtest.GenerateSite(t, simtest.TPMNoSecureBootCheck)
	if err := c.Apply(t.Context(), site.Worker); err == nil || !strings.Contains(err.Error(), "no TPM 2.0 device found") {
		t.Fatalf("Apply without TPM = %v, want refusal", err)
	}
}

func TestInstallBootstrapVerify(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)
	s := startNode(t, t.TempDir(), secureBootOn, tpm)
	addr := s.Addr().String()
	oldFP := s.Fingerprint()

	var steps []string

	opts := append(fast(), node.WithProgress(func(p node.Progress) { steps = append(steps, p.Step+": "+p.Message) }))

	m, err := node.Maintenance(t.Context(), addr, append(opts, node.WithPinnedFingerprint(oldFP))...)
	if err != nil {
		t.Fatalf("Maintenance: %v", err)
	}
	defer m.Close()

	// an invalid config is refused by machinery's validation
	if err := m.Apply(t.Context(), []byte("version: v1alpha1\nmachine: {}\n")); err == nil {
		t.Fatal("Apply(invalid) succeeded")
	}

	start := time.Now()

	if err := m.Apply(t.Context(), site.ControlPlane); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	n, err := node.Installed(t.Context(), addr, site.Talosconfig, opts...)
	if err != nil {
		t.Fatalf("Installed: %v", err)
	}
	defer n.Close()

	if err := n.WaitReady(t.Context()); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}

	// the maintenance API is gone: its pinned certificate is not served any more,
	// and a client without a certificate is refused
	if _, err := m.Version(t.Context()); err == nil {
		t.Error("maintenance client still works after install")
	}

	if c, err := node.Maintenance(t.Context(), addr, node.WithRetry(1, 0)); err == nil {
		if _, err := c.Version(t.Context()); err == nil {
			t.Error("unauthenticated client served after install")
		}

		c.Close()
	}

	res, err := n.Bootstrap(t.Context())
	if err != nil || res.AlreadyBootstrapped {
		t.Fatalf("first Bootstrap = %+v, %v", res, err)
	}

	res, err = n.Bootstrap(t.Context())
	if err != nil || !res.AlreadyBootstrapped || !strings.Contains(res.Message, "etcd data directory is not empty") {
		t.Fatalf("second Bootstrap = %+v, %v; want AlreadyBootstrapped", res, err)
	}

	if err := n.WaitHealthy(t.Context()); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}

	ev, err := node.Verify(t.Context(), n, siteKeys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}

	elapsed := time.Since(start)

	if !ev.Verified || len(ev.Reasons) != 0 {
		t.Fatalf("Verify = %+v, want verified", ev)
	}

	t.Logf("apply-to-verified (incl. bootstrap and etcd health) in-process: %s", elapsed)

	for _, v := range ev.Volumes {
		if d := cmp.Diff([]int{7}, v.TPMPCRs); d != "" || v.Phase != "ready" {
			t.Errorf("volume %s: phase %s, PCRs diff %s", v.ID, v.Phase, d)
		}
	}

	kc, err := n.Kubeconfig(t.Context())
	if err != nil {
		t.Fatalf("Kubeconfig: %v", err)
	}

	for _, want := range []string{"server: https://127.0.0.1:6443", "client-certificate-data: ", "current-context: admin@sim"} {
		if !strings.Contains(string(kc), want) {
			t.Errorf("kubeconfig lacks %q", want)
		}
	}

	checkKubeconfigCert(t, kc, site.ControlPlane)

	// a different image signing key is caught, with the exact reason
	other := siteKeys
	other.PCRSigningKeyFingerprint = "pcr-fpr-other"

	ev, err = node.Verify(t.Context(), n, other)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}

	if d := cmp.Diff([]string{"PCR signing-key fingerprint mismatch: node reports pcr-fpr-site, expected pcr-fpr-other"}, ev.Reasons); d != "" || ev.Verified {
		t.Errorf("Verify with other PCR key: verified=%v reasons (-want +got):\n%s", ev.Verified, d)
	}

	// never green by default
	ev, _ = node.Verify(t.Context(), n, node.Expected{})
	if ev.Verified || len(ev.Reasons) != 2 {
		t.Errorf("Verify with no expectations = %+v, want 2 reasons", ev)
	}

	if len(steps) == 0 {
		t.Error("no progress reported")
	}
}

func TestSecureBootOffRefusedThenNotVerified(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	s := startNode(t, t.TempDir(), secureBootOff, tpm)
	addr := s.Addr().String()

	m, err := node.Maintenance(t.Context(), addr, fast()...)
	if err != nil {
		t.Fatalf("Maintenance: %v", err)
	}
	defer m.Close()

	strict := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)

	err = m.Apply(t.Context(), strict.Worker)
	if err == nil || !strings.Contains(err.Error(), "failed to enroll the TPM2 key, as SecureBoot is disabled (and checkSecurebootOnEnroll is enabled)") {
		t.Fatalf("Apply with checkSecurebootStatusOnEnroll and SecureBoot off = %v, want refusal", err)
	}

	if s.Stage() != sim.StageMaintenance {
		t.Fatalf("stage after refusal = %s", s.Stage())
	}

	lax := simtest.GenerateSite(t, simtest.TPMNoSecureBootCheck)
	if err := m.Apply(t.Context(), lax.ControlPlane); err != nil {
		t.Fatalf("Apply without SecureBoot check: %v", err)
	}

	n, err := node.Installed(t.Context(), addr, lax.Talosconfig, fast()...)
	if err != nil {
		t.Fatalf("Installed: %v", err)
	}
	defer n.Close()

	if err := n.WaitReady(t.Context()); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}

	if _, err := n.Bootstrap(t.Context()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}

	if err := n.WaitHealthy(t.Context()); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}

	ev, err := node.Verify(t.Context(), n, siteKeys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}

	if d := cmp.Diff([]string{"SecureBoot is off (SecurityState.secureBoot=false)"}, ev.Reasons); d != "" || ev.Verified {
		t.Errorf("Verify: verified=%v reasons (-want +got):\n%s", ev.Verified, d)
	}
}

func TestPCR7ChangeBreaksUnsealAcrossReboot(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)
	dir := t.TempDir()

	// first boot: install
	cfg := simtest.Config(t, dir, secureBootOn, tpm)
	cfg.InstallDelay = 100 * time.Millisecond

	s1, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)

	go func() { done <- s1.Run(ctx) }()
	<-s1.Ready()

	m, err := node.Maintenance(t.Context(), s1.Addr().String(), fast()...)
	if err != nil {
		t.Fatal(err)
	}

	if err := m.Apply(t.Context(), site.ControlPlane); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	m.Close()
	simtest.WaitStage(t, s1, sim.StageRunning, 10*time.Second)
	cancel()

	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// a firmware or boot-chain change measured into PCR 7
	sum := sha256.Sum256([]byte("dbx update"))
	if _, err := (tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(7), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: sum[:]}}},
	}).Execute(tpm); err != nil {
		t.Fatalf("extend PCR 7: %v", err)
	}

	// second boot from the same disk: installed mode, but the key does not unseal
	s2 := startNode(t, dir, secureBootOn, tpm)
	if s2.Stage() != sim.StageRunning {
		t.Fatalf("stage after reboot = %s, want running", s2.Stage())
	}

	n, err := node.Installed(t.Context(), s2.Addr().String(), site.Talosconfig, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	vols, err := n.Volumes(t.Context())
	if err != nil {
		t.Fatalf("Volumes: %v", err)
	}

	for _, v := range vols {
		if v.Phase != "failed" || !strings.Contains(v.Error, "failed to unseal the TPM2 key") {
			t.Errorf("volume %s after PCR 7 change: phase %s, error %q", v.ID, v.Phase, v.Error)
		}
	}

	ev, err := node.Verify(t.Context(), n, siteKeys)
	if err != nil {
		t.Fatal(err)
	}

	if ev.Verified || len(ev.Reasons) != 2 || !strings.HasPrefix(ev.Reasons[0], "STATE is failed, not ready: failed to unseal the TPM2 key for slot 0: unseal:") {
		t.Errorf("Verify after PCR 7 change = %+v", ev)
	}

	if _, err := n.Kubeconfig(t.Context()); err == nil || !strings.Contains(err.Error(), "STATE is locked") {
		t.Errorf("Kubeconfig with STATE locked = %v", err)
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

func TestWorkerGetsCertificateFromTrustd(t *testing.T) {
	t.Parallel()

	tpm := &lockedTPM{tpm: openTPM(t)}
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)

	cp := startNode(t, t.TempDir(), secureBootOn, tpm)

	m, err := node.Maintenance(t.Context(), cp.Addr().String(), fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if err := m.Apply(t.Context(), site.ControlPlane); err != nil {
		t.Fatalf("Apply control plane: %v", err)
	}

	simtest.WaitStage(t, cp, sim.StageRunning, 10*time.Second)

	if cp.TrustdAddr() == nil {
		t.Fatal("control plane serves no trustd")
	}

	cfg := simtest.Config(t, t.TempDir(), secureBootOn, tpm)
	cfg.InstallDelay = 100 * time.Millisecond
	cfg.TrustdEndpoints = []string{cp.TrustdAddr().String()}

	w, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	simtest.Start(t, w)

	wm, err := node.Maintenance(t.Context(), w.Addr().String(), fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()

	if err := wm.Apply(t.Context(), site.Worker); err != nil {
		t.Fatalf("Apply worker: %v", err)
	}

	n, err := node.Installed(t.Context(), w.Addr().String(), site.Talosconfig, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	if err := n.WaitReady(t.Context()); err != nil {
		t.Fatalf("WaitReady worker: %v", err)
	}

	if _, err := n.Bootstrap(t.Context()); err == nil || !strings.Contains(err.Error(), "control plane") {
		t.Errorf("Bootstrap on a worker = %v, want refusal", err)
	}

	if err := n.WaitHealthy(t.Context()); err != nil {
		t.Fatalf("WaitHealthy worker: %v", err)
	}

	ev, err := node.Verify(t.Context(), n, siteKeys)
	if err != nil || !ev.Verified {
		t.Fatalf("Verify worker = %+v, %v", ev, err)
	}
}

// checkKubeconfigCert checks the kubeconfig's client certificate is an admin
// (system:masters) certificate signed by the config's Kubernetes CA.
func checkKubeconfigCert(t *testing.T, kc, machineConfig []byte) {
	t.Helper()

	cfg, err := configloader.NewFromBytes(machineConfig)
	if err != nil {
		t.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cfg.K8sAPIServerCAConfig().IssuingCA().Crt)

	m := regexp.MustCompile(`client-certificate-data: (\S+)`).FindSubmatch(kc)
	if m == nil {
		t.Fatal("no client-certificate-data in kubeconfig")
	}

	der, err := base64.StdEncoding.DecodeString(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}

	block, _ := pem.Decode(der)
	if block == nil {
		t.Fatal("client certificate is not PEM")
	}

	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := crt.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("kubeconfig client certificate does not chain to the Kubernetes CA: %v", err)
	}

	if d := cmp.Diff([]string{"system:masters"}, crt.Subject.Organization); d != "" {
		t.Errorf("kubeconfig certificate organization (-want +got):\n%s", d)
	}
}
