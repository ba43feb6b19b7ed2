package install_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"onramp/talos"
	"onramp/talos/install"
	"onramp/talos/node"
)

const (
	ukiFpr = "282e8130b7070f107aaecc25d3992ca4440270860b09088792a5075fab0d13f8"
	pcrFpr = "6755d582ed83cbba5ce1f3981a65aa4d44f26222efbabcbd2c391a8ad428cb37"
	nodeFP = "0yyF2mCI9d2b8pUOZ8vQ9KmB2MPPv5Ux/0KBAdrHYEk="
)

var expected = node.Expected{UKISigningKeyFingerprint: ukiFpr, PCRSigningKeyFingerprint: pcrFpr}

func testBundle(t *testing.T) *secrets.Bundle {
	t.Helper()

	b, err := os.ReadFile("../testdata/TEST-ONLY-secrets.yaml")
	if err != nil {
		t.Fatal(err)
	}

	bundle, err := talos.UnmarshalSecrets(b, nil)
	if err != nil {
		t.Fatal(err)
	}

	return bundle
}

func testSite(machines ...talos.Machine) *talos.Site {
	return &talos.Site{
		Cluster:     "lab",
		Endpoint:    "https://10.77.0.10:6443",
		InstallDisk: &talos.DiskSelector{DevPath: "/dev/vda"},
		SecureBoot:  talos.SecureBootExpect{UKISigningKeyFingerprint: ukiFpr, PCRSigningKeyFingerprint: pcrFpr},
		Machines:    machines,
	}
}

var (
	cp1 = talos.Machine{MAC: "52:54:00:77:00:11", Role: talos.RoleControlPlane, Hostname: "cp-1"}
	cp2 = talos.Machine{MAC: "52:54:00:77:00:12", Role: talos.RoleControlPlane, Hostname: "cp-2"}
	w1  = talos.Machine{MAC: "52:54:00:77:00:21", Role: talos.RoleWorker, Hostname: "worker-1"}
)

// fakeNode is one node's behaviour; zero value: everything works, SecureBoot on.
type fakeNode struct {
	applyErr      error
	waitReady     func(ctx context.Context) error
	secureBootOff bool

	mu         sync.Mutex
	applied    [][]byte
	bootstraps int
	healthy    int
	kubeconfig int
}

type fakeClients struct {
	mu    sync.Mutex
	nodes map[string]*fakeNode // by address
	// pinned records the fingerprint each maintenance connection pinned.
	pinned []string
}

func (f *fakeClients) node(addr string) *fakeNode {
	f.mu.Lock()
	defer f.mu.Unlock()

	return f.nodes[addr]
}

func (f *fakeClients) Maintenance(_ context.Context, t install.Target, _ func(node.Progress)) (install.MaintenanceClient, error) {
	f.mu.Lock()
	f.pinned = append(f.pinned, t.Fingerprint)
	f.mu.Unlock()

	if t.Fingerprint != nodeFP {
		return nil, &node.FingerprintMismatchError{Shown: nodeFP, Expected: t.Fingerprint}
	}

	return fakeMaint{f.node(t.Addr)}, nil
}

func (f *fakeClients) Installed(_ context.Context, t install.Target, talosconfig []byte, _ func(node.Progress)) (install.InstalledClient, error) {
	if !strings.Contains(string(talosconfig), "context: lab") {
		return nil, errors.New("talosconfig is not the site's")
	}

	return fakeInst{addr: t.Addr, n: f.node(t.Addr)}, nil
}

type fakeMaint struct{ n *fakeNode }

func (m fakeMaint) Apply(_ context.Context, cfg []byte) error {
	if m.n.applyErr != nil {
		return m.n.applyErr
	}

	m.n.mu.Lock()
	m.n.applied = append(m.n.applied, cfg)
	m.n.mu.Unlock()

	return nil
}

func (fakeMaint) Close() error { return nil }

type fakeInst struct {
	addr string
	n    *fakeNode
}

func (i fakeInst) Addr() string { return i.addr }

func (i fakeInst) Security(context.Context) (node.Security, error) {
	return node.Security{SecureBoot: !i.n.secureBootOff, BootedWithUKI: true, TPMPresent: true, UKISigningKeyFingerprint: ukiFpr, PCRSigningKeyFingerprint: pcrFpr}, nil
}

func (i fakeInst) Volumes(context.Context) ([]node.Volume, error) {
	return []node.Volume{
		{ID: "STATE", Phase: "ready", EncryptionProvider: "luks2", KeyTypes: []string{"tpm"}},
		{ID: "EPHEMERAL", Phase: "ready", EncryptionProvider: "luks2", KeyTypes: []string{"tpm"}},
	}, nil
}

func (i fakeInst) WaitReady(ctx context.Context) error {
	if i.n.waitReady != nil {
		return i.n.waitReady(ctx)
	}

	return nil
}

func (i fakeInst) Bootstrap(context.Context) (node.BootstrapResult, error) {
	i.n.mu.Lock()
	defer i.n.mu.Unlock()

	i.n.bootstraps++
	time.Sleep(20 * time.Millisecond) // a slow RPC widens any race

	return node.BootstrapResult{Message: "etcd bootstrapped"}, nil
}

func (i fakeInst) WaitHealthy(context.Context) error {
	i.n.mu.Lock()
	defer i.n.mu.Unlock()

	i.n.healthy++

	return nil
}

func (i fakeInst) Kubeconfig(context.Context) ([]byte, error) {
	i.n.mu.Lock()
	defer i.n.mu.Unlock()

	i.n.kubeconfig++

	return []byte("apiVersion: v1\nkind: Config\n"), nil
}

func (fakeInst) Close() error { return nil }

// recorder keeps every update per node.
type recorder struct {
	mu      sync.Mutex
	updates map[string][]install.Update
}

func (r *recorder) progress(u install.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()

	if r.updates == nil {
		r.updates = map[string][]install.Update{}
	}

	r.updates[u.Key] = append(r.updates[u.Key], u)
}

// final is each step's last state and message.
func (r *recorder) final(key string) map[install.Step]string {
	r.mu.Lock()
	defer r.mu.Unlock()

	out := map[install.Step]string{}

	for _, u := range r.updates[key] {
		out[u.Step] = string(u.State) + ": " + u.Message
	}

	return out
}

func newInstaller(t *testing.T, site *talos.Site, fc install.Clients, rec *recorder, to install.Timeouts) *install.Installer {
	t.Helper()

	in, err := install.New(install.Config{Site: site, Secrets: testBundle(t), Expected: expected, Clients: fc, Progress: rec.progress, Timeouts: to})
	if err != nil {
		t.Fatalf("install.New: %v", err)
	}

	return in
}

func target(m talos.Machine) install.Target {
	return install.Target{Machine: m, Addr: m.Hostname, Fingerprint: nodeFP}
}

// Three nodes installing at once: etcd is bootstrapped once, on the site's first
// control plane; the kubeconfig is fetched once; every node is verified.
func TestConcurrentInstallBootstrapsOnce(t *testing.T) {
	t.Parallel()

	fc := &fakeClients{nodes: map[string]*fakeNode{"cp-1": {}, "cp-2": {}, "worker-1": {}}}
	rec := &recorder{}
	site := testSite(w1, cp1, cp2) // the first control plane is cp-1 even if not first in the list
	in := newInstaller(t, site, fc, rec, install.Timeouts{})

	var wg sync.WaitGroup

	evs := make([]node.Evidence, 3)
	errs := make([]error, 3)

	for i, m := range []talos.Machine{cp2, w1, cp1} {
		wg.Go(func() { evs[i], errs[i] = in.Run(t.Context(), target(m)) })
	}

	// cp-1 run twice (a double click): still one bootstrap
	wg.Go(func() {
		if _, err := in.Run(t.Context(), target(cp1)); err != nil {
			t.Errorf("second run of cp-1: %v", err)
		}
	})
	wg.Wait()

	for i, err := range errs {
		if err != nil || !evs[i].Verified {
			t.Errorf("node %d: evidence %+v, err %v", i, evs[i], err)
		}
	}

	if n := fc.nodes["cp-1"].bootstraps + fc.nodes["cp-2"].bootstraps + fc.nodes["worker-1"].bootstraps; n != 1 || fc.nodes["cp-1"].bootstraps != 1 {
		t.Errorf("Bootstrap RPCs: cp-1 %d, total %d; want exactly 1 on cp-1", fc.nodes["cp-1"].bootstraps, n)
	}

	st := in.Cluster().State()
	if d := cmp.Diff(install.ClusterState{Bootstrapped: true, BootstrapNode: "cp-1", BootstrapCalls: 1, Healthy: true, Kubeconfig: true}, st); d != "" {
		t.Errorf("cluster state (-want +got):\n%s", d)
	}

	if kc := in.Cluster().Kubeconfig(); !strings.Contains(string(kc), "kind: Config") {
		t.Errorf("kubeconfig = %q", kc)
	}

	if got := fc.nodes["cp-1"].kubeconfig + fc.nodes["cp-2"].kubeconfig; got < 1 || fc.nodes["worker-1"].kubeconfig != 0 {
		t.Errorf("kubeconfig fetched cp %d, worker %d times", got, fc.nodes["worker-1"].kubeconfig)
	}

	for _, tc := range []struct {
		m    talos.Machine
		want string
	}{
		{cp2, "skipped: etcd is bootstrapped on cp-1, the site's first control plane; this node joins it"},
		{w1, "skipped: workers do not bootstrap etcd"},
	} {
		if got := rec.final(tc.m.MAC)[install.StepBootstrap]; got != tc.want {
			t.Errorf("%s bootstrap step = %q, want %q", tc.m.Hostname, got, tc.want)
		}
	}

	for _, m := range []talos.Machine{cp1, cp2, w1} {
		f := rec.final(m.MAC)
		for _, s := range install.Steps {
			if !strings.HasPrefix(f[s], "done") && !strings.HasPrefix(f[s], "skipped") {
				t.Errorf("%s step %s = %q", m.Hostname, s, f[s])
			}
		}

		// every node got its own config, with its hostname
		if cfgs := fc.nodes[m.Hostname].applied; len(cfgs) == 0 || !strings.Contains(string(cfgs[0]), "hostname: "+m.Hostname) {
			t.Errorf("%s: applied configs %d, want its own", m.Hostname, len(cfgs))
		}
	}

	// a step that ended gets no more updates, and steps run in order (cp-1 ran twice)
	for key, ups := range rec.updates {
		if key == cp1.MAC {
			continue
		}

		ended := map[install.Step]bool{}
		last := -1

		for _, u := range ups {
			if ended[u.Step] {
				t.Errorf("%s: update %+v after step %s ended", key, u, u.Step)
			}

			if u.State != install.StateRunning {
				ended[u.Step] = true
			}

			if i := slices.Index(install.Steps, u.Step); i < last {
				t.Errorf("%s: step %s after %s", key, u.Step, install.Steps[last])
			} else {
				last = i
			}
		}
	}

	// the config and keys never appear in progress messages
	for key, ups := range rec.updates {
		for _, u := range ups {
			if strings.Contains(u.Message, "BEGIN") || strings.Contains(u.Message, "apiVersion") {
				t.Errorf("%s: secret material in progress %q", key, u.Message)
			}
		}
	}
}

func TestStepFailures(t *testing.T) {
	t.Parallel()

	const refusal = "failed to enroll the TPM2 key, as SecureBoot is disabled (and checkSecurebootOnEnroll is enabled)"

	tests := []struct {
		name      string
		n         *fakeNode
		fp        string
		timeouts  install.Timeouts
		cancel    time.Duration
		wantStep  install.Step
		wantErr   string // Reason(err) contains
		wantIs    error
		notRunAny []install.Step
	}{
		{
			name:     "apply refused by Talos",
			n:        &fakeNode{applyErr: errors.New("apply config to 10.77.0.12:50000: " + status.Error(codes.InvalidArgument, refusal).Error())},
			wantStep: install.StepApply, wantErr: refusal,
			notRunAny: []install.Step{install.StepInstall, install.StepVerify},
		},
		{
			name:     "apply refused, wrapped status",
			n:        &fakeNode{applyErr: wrap(status.Error(codes.InvalidArgument, refusal))},
			wantStep: install.StepApply, wantErr: refusal,
		},
		{
			name:     "fingerprint changed",
			n:        &fakeNode{},
			fp:       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
			wantStep: install.StepApply, wantErr: "certificate fingerprint mismatch: node shows " + nodeFP,
		},
		{
			name:     "install times out",
			n:        &fakeNode{waitReady: pollLike},
			timeouts: install.Timeouts{Install: 50 * time.Millisecond},
			wantStep: install.StepInstall, wantErr: "timed out after 50ms: context deadline exceeded (last: wait-ready", wantIs: context.DeadlineExceeded,
		},
		{
			name:     "cancelled while installing",
			n:        &fakeNode{waitReady: pollLike},
			cancel:   50 * time.Millisecond,
			wantStep: install.StepInstall, wantErr: "cancelled: context canceled (last: wait-ready", wantIs: context.Canceled,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			fc := &fakeClients{nodes: map[string]*fakeNode{"cp-1": tt.n}}
			rec := &recorder{}
			in := newInstaller(t, testSite(cp1), fc, rec, tt.timeouts)

			ctx := t.Context()
			if tt.cancel > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(tt.cancel, cancel)
			}

			tg := target(cp1)
			if tt.fp != "" {
				tg.Fingerprint = tt.fp
			}

			_, err := in.Run(ctx, tg)

			var se *install.StepError
			if !errors.As(err, &se) || se.Step != tt.wantStep {
				t.Fatalf("Run = %v, want a %s StepError", err, tt.wantStep)
			}

			if !strings.Contains(install.Reason(err), tt.wantErr) {
				t.Errorf("Reason = %q, want it to contain %q", install.Reason(err), tt.wantErr)
			}

			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Run error %v is not %v", err, tt.wantIs)
			}

			f := rec.final(cp1.MAC)
			if !strings.HasPrefix(f[tt.wantStep], "failed: ") {
				t.Errorf("step %s = %q, want failed", tt.wantStep, f[tt.wantStep])
			}

			for _, s := range install.Steps[slices.Index(install.Steps, tt.wantStep)+1:] {
				if _, ran := f[s]; ran {
					t.Errorf("step %s ran after %s failed", s, tt.wantStep)
				}
			}

			if st := in.Cluster().State(); st.Bootstrapped || st.BootstrapCalls != 0 {
				t.Errorf("cluster state after failure = %+v", st)
			}
		})
	}
}

// pollLike fails the way node's WaitReady does when its context ends: the context
// error with the node's last answer, a gRPC status, wrapped.
func pollLike(ctx context.Context) error {
	<-ctx.Done()

	return fmt.Errorf("wait-ready 10.77.0.11:50000: %w (last: %w)", ctx.Err(), status.Error(codes.Unavailable, "connection refused"))
}

func wrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "apply config to 10.77.0.12:50000: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// A node without SecureBoot that installs anyway (a lax policy) ends with evidence
// that is not verified, and the exact reason; Verify re-checks an installed node.
func TestNotVerifiedAndReverify(t *testing.T) {
	t.Parallel()

	n := &fakeNode{secureBootOff: true}
	fc := &fakeClients{nodes: map[string]*fakeNode{"cp-1": n}}
	rec := &recorder{}
	in := newInstaller(t, testSite(cp1), fc, rec, install.Timeouts{})

	ev, err := in.Run(t.Context(), target(cp1))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	if d := cmp.Diff([]string{"SecureBoot is off (SecurityState.secureBoot=false)"}, ev.Reasons); d != "" || ev.Verified {
		t.Errorf("evidence verified=%v reasons (-want +got):\n%s", ev.Verified, d)
	}

	if got := rec.final(cp1.MAC)[install.StepVerify]; got != "done: not verified: SecureBoot is off (SecurityState.secureBoot=false)" {
		t.Errorf("verify step = %q", got)
	}

	n.mu.Lock()
	n.secureBootOff = false
	n.mu.Unlock()

	ev, err = in.Verify(t.Context(), target(cp1))
	if err != nil || !ev.Verified {
		t.Errorf("Verify after fix = %+v, %v", ev, err)
	}

	if n.bootstraps != 1 {
		t.Errorf("Bootstrap RPCs = %d, want 1 (Verify must not bootstrap)", n.bootstraps)
	}
}

func TestNewRefusesIncompleteInput(t *testing.T) {
	t.Parallel()

	bad := testSite(cp1)
	bad.Endpoint = ""

	tests := []struct {
		name string
		cfg  install.Config
		want string
	}{
		{"no site", install.Config{Secrets: testBundle(t)}, "no site"},
		{"no secrets", install.Config{Site: testSite(cp1)}, "no secrets bundle"},
		{"invalid site", install.Config{Site: bad, Secrets: testBundle(t)}, "endpoint: is required"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			if _, err := install.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want %q", err, tt.want)
			}
		})
	}
}

// Titles are what the UI shows; fixed by the contract with the frontend.
func TestStepTitles(t *testing.T) {
	t.Parallel()

	var got []string
	for _, s := range install.Steps {
		got = append(got, string(s)+"="+s.Title())
	}

	want := []string{
		"config=Generate config", "apply=Apply over pinned TLS", "install=Install and reboot",
		"bootstrap=Bootstrap etcd", "health=Kubernetes healthy", "verify=Verify SecureBoot and encryption",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("titles (-want +got):\n%s", d)
	}
}
