package install_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
	"go.uber.org/goleak"

	"onramp/lab/sim"
	"onramp/lab/sim/simtest"
	"onramp/talos/install"
	"onramp/talos/node"
)

// Clients, simulators and step timers must leave no goroutines behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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

func startSim(t *testing.T, fw sim.Firmware, tpm transport.TPM) *sim.Sim {
	t.Helper()

	cfg := simtest.Config(t, t.TempDir(), fw, tpm)
	cfg.UKISigningKeyFingerprint, cfg.PCRSigningKeyFingerprint = ukiFpr, pcrFpr
	cfg.InstallDelay = 200 * time.Millisecond
	cfg.EtcdStartDelay = 300 * time.Millisecond

	s, err := sim.New(cfg)
	if err != nil {
		t.Fatalf("new simulator: %v", err)
	}

	simtest.Start(t, s)

	return s
}

// The whole workflow against the in-process Talos simulator, with Onramp's
// generated configs: a SecureBoot + TPM control plane installs, bootstraps once,
// turns healthy, gives its kubeconfig and is verified; a node with SecureBoot off
// is refused by the node at apply with Talos' words, and stays in maintenance.
func TestWorkflowAgainstSimulator(t *testing.T) {
	t.Parallel()

	raw, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open TPM simulator: %v", err)
	}
	t.Cleanup(func() { raw.Close() })

	tpm := &lockedTPM{tpm: raw}
	cpSim := startSim(t, sim.Firmware{UEFI: true, SecureBoot: true}, tpm)
	offSim := startSim(t, sim.Firmware{UEFI: true}, tpm)

	site := testSite(cp1, w1)
	site.Endpoint = "https://127.0.0.1:6443"

	rec := &recorder{}
	opts := []node.Option{node.WithRetry(4, 50*time.Millisecond), node.WithCallTimeout(5 * time.Second), node.WithWaitTimeout(30 * time.Second)}

	in, err := install.New(install.Config{Site: site, Secrets: testBundle(t), Expected: expected, Clients: install.NodeClients(opts...), Progress: rec.progress})
	if err != nil {
		t.Fatal(err)
	}

	var (
		wg              sync.WaitGroup
		cpEv, offEv     node.Evidence
		cpErr, offErr   error
		start           = time.Now()
		cpTook, offTook time.Duration
	)

	wg.Go(func() {
		cpEv, cpErr = in.Run(t.Context(), install.Target{Machine: cp1, Addr: cpSim.Addr().String(), Fingerprint: cpSim.Fingerprint()})
		cpTook = time.Since(start)
	})
	wg.Go(func() {
		offEv, offErr = in.Run(t.Context(), install.Target{Machine: w1, Addr: offSim.Addr().String(), Fingerprint: offSim.Fingerprint()})
		offTook = time.Since(start)
	})
	wg.Wait()

	if cpErr != nil || !cpEv.Verified || !cpEv.SecureBoot || !cpEv.TPMPresent {
		t.Fatalf("control plane: evidence %+v, err %v", cpEv, cpErr)
	}

	for _, v := range cpEv.Volumes {
		if (v.ID == "STATE" || v.ID == "EPHEMERAL") && !v.TPMEncrypted() {
			t.Errorf("volume %s not TPM-encrypted: %+v", v.ID, v)
		}
	}

	st := in.Cluster().State()
	if !st.Bootstrapped || st.BootstrapNode != "cp-1" || st.BootstrapCalls != 1 || !st.Healthy || !st.Kubeconfig {
		t.Errorf("cluster state = %+v", st)
	}

	if got := rec.final(cp1.MAC)[install.StepBootstrap]; got != "done: etcd bootstrapped" {
		t.Errorf("bootstrap step = %q", got)
	}

	const refusal = "failed to enroll the TPM2 key, as SecureBoot is disabled (and checkSecurebootOnEnroll is enabled)"
	if !strings.Contains(install.Reason(offErr), refusal) || offEv.Verified {
		t.Errorf("SecureBoot-off node: Reason %q, want %q", install.Reason(offErr), refusal)
	}

	if offSim.Stage() != sim.StageMaintenance {
		t.Errorf("refused node stage %s, want maintenance", offSim.Stage())
	}

	t.Logf("in-process: config → verified %s; refusal after %s", cpTook.Round(time.Millisecond), offTook.Round(time.Millisecond))
}
