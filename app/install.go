package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"onramp/lab/netns"
	"onramp/talos"
	"onramp/talos/install"
	"onramp/talos/node"
)

// Install is the Install & Verify step: the technician installs the site's
// discovered machines (talos/install runs each one: config, apply over the
// pinned maintenance TLS, install, bootstrap once, health, verify) and sees
// each node's progress and evidence. The talosconfig and the kubeconfig stay
// in this service's memory: never written in plaintext, never logged.
type Install struct {
	site     *Site
	machines *Machines
	lab      *Lab
	bus      *Bus
	log      *slog.Logger

	// Test knobs: node client options, step timeouts, and where a leased
	// address's Talos API is (nil: the address, port 50000).
	nodeOpts []node.Option
	timeouts install.Timeouts
	addrFor  func(ip string) string

	ctx    context.Context // ends when the app closes
	stop   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	runs   map[string]*installRun // by site machine key (normalized MAC or UUID)
	bundle *secrets.Bundle        // the bundle (cluster ID) cluster belongs to
	// cluster is the site's bootstrap/health/kubeconfig state; in holds the
	// latest installer and with it the talosconfig.
	cluster *install.Cluster
	in      *install.Installer

	// vault holds the database whose audit trail records each node's
	// outcome (install_record.go); nil: memory only.
	vault *Vault
	// restored is the cluster ID whose record was loaded; kubeconfigKept
	// the one whose kubeconfig is in the vault.
	restored, kubeconfigKept string
}

// InstallView is the whole Install step; "install:changed" carries it.
type InstallView struct {
	Nodes         []InstallNode `json:"nodes"`
	Blockers      []string      `json:"blockers"`
	Bootstrapped  bool          `json:"bootstrapped"`
	BootstrapNode string        `json:"bootstrapNode,omitempty"`
	Healthy       bool          `json:"healthy"`
	Kubeconfig    bool          `json:"kubeconfig"`
}

// InstallNode is one site machine.
type InstallNode struct {
	MAC         string         `json:"mac"`
	UUID        string         `json:"uuid,omitempty"`
	Hostname    string         `json:"hostname"`
	Role        string         `json:"role"`
	IP          string         `json:"ip,omitempty"`
	Serial      string         `json:"serial,omitempty"`
	SecureBoot  string         `json:"secureBoot,omitempty"`
	TPM         string         `json:"tpm,omitempty"`
	Fingerprint string         `json:"fingerprint,omitempty"`
	Ready       bool           `json:"ready"`
	Blocker     string         `json:"blocker,omitempty"`
	State       string         `json:"state"`
	Step        string         `json:"step,omitempty"`
	Message     string         `json:"message,omitempty"`
	Error       string         `json:"error,omitempty"`
	Steps       []InstallStep  `json:"steps"`
	Evidence    *node.Evidence `json:"evidence,omitempty"`
	// ConfigSHA256 is the SHA-256 of the machine config the node accepted.
	ConfigSHA256 string     `json:"configSha256,omitempty"`
	StartedAt    *time.Time `json:"startedAt,omitempty"`
	FinishedAt   *time.Time `json:"finishedAt,omitempty"`
}

// InstallStep is one step of a node's install.
type InstallStep struct {
	Name    string `json:"name"`
	Title   string `json:"title"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	TookMs  int64  `json:"tookMs,omitempty"`
}

// InstallRequest names the machines to install, each with the certificate
// fingerprint the technician compared with the node's console.
type InstallRequest struct {
	Machines []InstallTarget `json:"machines"`
}

// InstallTarget is one machine of an InstallRequest.
type InstallTarget struct {
	MAC         string `json:"mac"`
	Fingerprint string `json:"fingerprint"`
}

// Node states.
const (
	nodeIdle        = "idle"
	nodeRunning     = "running"
	nodeInstalled   = "installed"
	nodeVerified    = "verified"
	nodeNotVerified = "not-verified"
	nodeFailed      = "failed"
	nodeCancelled   = "cancelled"
)

// Site-wide blockers.
const (
	blockNoSite      = "Fill in the site first"
	blockProblems    = "The site has problems: fix them on the Site step"
	blockNoSecrets   = "Generate the cluster secrets on the Site step"
	blockNoImageKeys = "Set the expected UKI and PCR signing-key fingerprints on the Site step"
)

// installRun is a node's install, started or finished.
type installRun struct {
	key       string      // the site machine's key
	node      InstallNode // the run's part: state, step, message, error, steps, evidence, times
	installed bool        // the install step completed: Verify may run
	cancel    context.CancelFunc
	done      chan struct{}
}

// NewInstall returns the service.
func NewInstall(site *Site, machines *Machines, lab *Lab, bus *Bus, log *slog.Logger) *Install {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Install{
		site: site, machines: machines, lab: lab, bus: bus, log: log.With("component", "app/install"),
		ctx: ctx, stop: stop, runs: map[string]*installRun{},
	}
}

// installInputs returns copies of the site and the secrets bundle pointer
// (the bundle is never modified after generation).
func (s *Site) installInputs() (*talos.Site, *secrets.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.site == nil {
		return nil, s.bundle
	}
	c := *s.site
	c.Machines = slices.Clone(s.site.Machines)
	return &c, s.bundle
}

// Status returns the Install step's view.
func (i *Install) Status() (InstallView, error) {
	return i.view(), nil
}

// Start installs the requested machines in the background. It refuses the
// whole request, before touching any node, when the site is not ready, a
// machine is unknown or busy, or a node's current fingerprint is not the one
// the technician confirmed.
func (i *Install) Start(req InstallRequest) (InstallView, error) {
	site, bundle := i.site.installInputs()
	if b := siteBlockers(site, bundle); len(b) > 0 {
		return i.view(), fmt.Errorf("cannot install yet: %s", strings.Join(b, "; "))
	}
	if len(req.Machines) == 0 {
		return i.view(), errors.New("choose at least one machine to install")
	}
	seen := map[string]bool{}
	targets := make([]install.Target, 0, len(req.Machines))
	views := i.machineViews()
	for _, t := range req.Machines {
		m, ok := siteMachine(site, views, t.MAC)
		if t.MAC == "" || !ok {
			return i.view(), fmt.Errorf("install %q: not a machine of the site", t.MAC)
		}
		key := machineKey(m)
		if seen[key] {
			return i.view(), fmt.Errorf("install %s: listed twice", m.Hostname)
		}
		seen[key] = true
		mv := findMachine(views, m)
		fp := ""
		if mv != nil {
			fp = mv.Attrs["fingerprint"]
		}
		switch {
		case mv == nil:
			return i.view(), fmt.Errorf("install %s: not seen on the network yet", m.Hostname)
		case fp == "":
			return i.view(), fmt.Errorf("install %s: not read in maintenance mode yet", m.Hostname)
		case strings.TrimSpace(t.Fingerprint) == "":
			return i.view(), fmt.Errorf("install %s: confirm the certificate fingerprint shown on the node's console", m.Hostname)
		case strings.TrimSpace(t.Fingerprint) != fp:
			return i.view(), fmt.Errorf("install %s: the node's certificate fingerprint is now %s, not the %s you confirmed: the node changed, rediscover it", m.Hostname, fp, strings.TrimSpace(t.Fingerprint))
		case mv.IP == "":
			return i.view(), fmt.Errorf("install %s: no address from Onramp's leases yet", m.Hostname)
		}
		targets = append(targets, i.target(m, mv, fp))
	}

	in, err := i.installer(site, bundle)
	if err != nil {
		return i.view(), err
	}
	i.restore(bundle)

	i.mu.Lock()
	for _, t := range targets {
		if r := i.runs[machineKey(t.Machine)]; r != nil && r.node.State == nodeRunning {
			i.mu.Unlock()
			return i.view(), fmt.Errorf("install %s: already running", t.Machine.Hostname)
		} else if r != nil && r.installed {
			i.mu.Unlock()
			return i.view(), fmt.Errorf("install %s: already installed (use Verify to check it again)", t.Machine.Hostname)
		}
	}
	for _, t := range targets {
		i.launchLocked(t, func(ctx context.Context, r *installRun) {
			ev, err := in.Run(ctx, t)
			i.finish(r, ev, err)
		}, install.Steps)
	}
	i.mu.Unlock()
	for _, t := range targets {
		i.record(auditInstallStart, machineKey(t.Machine), installStartRecord{Cluster: clusterID(bundle),
			Hostname: t.Machine.Hostname, IP: t.Addr, Fingerprint: t.Fingerprint, Steps: []string{"all"}})
	}
	i.publish()
	return i.view(), nil
}

// Cancel stops a running install or verification of one machine.
func (i *Install) Cancel(mac string) (InstallView, error) {
	site, _ := i.site.installInputs()
	if site == nil {
		return i.view(), errors.New(blockNoSite)
	}
	m, ok := siteMachine(site, i.machineViews(), mac)
	if mac == "" || !ok {
		return i.view(), fmt.Errorf("cancel %q: not a machine of the site", mac)
	}
	i.mu.Lock()
	r := i.runs[machineKey(m)]
	if r == nil || r.node.State != nodeRunning {
		i.mu.Unlock()
		return i.view(), fmt.Errorf("cancel %s: nothing is running", m.Hostname)
	}
	r.cancel()
	done := r.done
	i.mu.Unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	return i.view(), nil
}

// Verify re-runs the verification of an installed machine in the background.
func (i *Install) Verify(mac string) (InstallView, error) {
	site, bundle := i.site.installInputs()
	if b := siteBlockers(site, bundle); len(b) > 0 {
		return i.view(), fmt.Errorf("cannot verify yet: %s", strings.Join(b, "; "))
	}
	views := i.machineViews()
	m, ok := siteMachine(site, views, mac)
	if mac == "" || !ok {
		return i.view(), fmt.Errorf("verify %q: not a machine of the site", mac)
	}
	i.restore(bundle)
	mv := findMachine(views, m)
	if mv == nil || mv.IP == "" {
		// After a restart, before the node asked for a lease again: the
		// address and fingerprint of the record.
		i.mu.Lock()
		if r := i.runs[machineKey(m)]; r != nil && r.node.IP != "" && r.node.MAC != "" {
			mv = &MachineView{MAC: r.node.MAC, IP: r.node.IP, Attrs: map[string]string{"fingerprint": r.node.Fingerprint}}
		}
		i.mu.Unlock()
	}
	if mv == nil || mv.IP == "" {
		return i.view(), fmt.Errorf("verify %s: no address from Onramp's leases", m.Hostname)
	}
	in, err := i.installer(site, bundle)
	if err != nil {
		return i.view(), err
	}
	i.mu.Lock()
	r := i.runs[machineKey(m)]
	switch {
	case r == nil || !r.installed:
		i.mu.Unlock()
		return i.view(), fmt.Errorf("verify %s: install it first", m.Hostname)
	case r.node.State == nodeRunning:
		i.mu.Unlock()
		return i.view(), fmt.Errorf("verify %s: already running", m.Hostname)
	}
	t := i.target(m, mv, mv.Attrs["fingerprint"])
	i.launchLocked(t, func(ctx context.Context, r *installRun) {
		ev, err := in.Verify(ctx, t)
		i.finish(r, ev, err)
	}, []install.Step{install.StepVerify})
	i.mu.Unlock()
	i.publish()
	return i.view(), nil
}

// close cancels every run and waits for them.
func (i *Install) close() {
	i.stop()
	i.wg.Wait()
}

// launchLocked starts fn for t, resetting the given steps to pending.
func (i *Install) launchLocked(t install.Target, fn func(ctx context.Context, r *installRun), reset []install.Step) {
	key := machineKey(t.Machine)
	r := i.runs[key]
	if r == nil {
		r = &installRun{key: key, node: InstallNode{Steps: pendingSteps()}}
		i.runs[key] = r
	}
	if r.key == "" {
		r.key = key
	}
	for k := range r.node.Steps {
		if slices.Contains(reset, install.Step(r.node.Steps[k].Name)) {
			r.node.Steps[k] = InstallStep{Name: r.node.Steps[k].Name, Title: r.node.Steps[k].Title, State: string(install.StatePending)}
		}
	}
	now := time.Now().UTC()
	ctx, cancel := context.WithCancel(i.ctx)
	r.node.Hostname = t.Machine.Hostname
	r.node.State, r.node.Step, r.node.Message, r.node.Error = nodeRunning, "", "starting", ""
	r.node.StartedAt, r.node.FinishedAt = &now, nil
	r.cancel, r.done = cancel, make(chan struct{})
	i.log.Info("install started", "mac", t.Machine.MAC, "hostname", t.Machine.Hostname, "addr", t.Addr, "steps", len(reset))
	i.wg.Go(func() {
		defer close(r.done)
		defer cancel()
		fn(ctx, r)
	})
}

// finish records a run's outcome.
func (i *Install) finish(r *installRun, ev node.Evidence, err error) {
	i.mu.Lock()
	now := time.Now().UTC()
	r.node.FinishedAt = &now
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		r.node.State, r.node.Error = nodeCancelled, "Cancelled during "+r.node.Step
		if i.ctx.Err() != nil {
			r.node.Error = "Stopped during " + r.node.Step + ": Onramp is closing"
		}
	case err != nil:
		r.node.State, r.node.Error = nodeFailed, install.Reason(err)
		if se := (*install.StepError)(nil); errors.As(err, &se) && se.Step == install.StepVerify && r.installed {
			// verification could not run, but the node is installed
			r.node.State = nodeInstalled
		}
	case ev.Verified:
		r.node.State, r.node.Evidence = nodeVerified, &ev
	default:
		r.node.State, r.node.Evidence, r.node.Error = nodeNotVerified, &ev, strings.Join(ev.Reasons, "; ")
	}
	i.log.Info("install finished", "hostname", r.node.Hostname, "state", r.node.State, "error", r.node.Error)
	key, bundle := r.key, i.bundle
	i.mu.Unlock()
	// The audit row first, then the push: a page that reacts to the
	// outcome (Report) finds it in the trail.
	i.recordFinish(key, bundle)
	i.publish()
}

// progress applies one update of talos/install to the node's run.
func (i *Install) progress(u install.Update) {
	i.mu.Lock()
	r := i.runs[u.Key]
	if r == nil {
		i.mu.Unlock()
		return
	}
	for k := range r.node.Steps {
		st := &r.node.Steps[k]
		if st.Name != string(u.Step) {
			continue
		}
		st.State, st.Message = string(u.State), u.Message
		if u.State != install.StateRunning {
			st.TookMs = u.Took.Milliseconds()
		}
	}
	r.node.Step, r.node.Message = string(u.Step), u.Message
	if u.ConfigSHA256 != "" {
		r.node.ConfigSHA256 = u.ConfigSHA256
	}
	if u.Step == install.StepInstall && u.State == install.StateDone {
		r.installed = true
	}
	if u.State != install.StateRunning {
		i.log.Info("install step", "key", u.Key, "step", u.Step, "state", u.State, "took", u.Took)
	}
	i.mu.Unlock()
	i.publish()
}

// installer returns an installer for the current site and bundle; the
// cluster state (bootstrap once, kubeconfig) is kept while the bundle is the
// same cluster's.
func (i *Install) installer(site *talos.Site, bundle *secrets.Bundle) (*install.Installer, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cluster == nil || !sameCluster(i.bundle, bundle) {
		i.cluster, i.bundle = install.NewCluster(), bundle
	}
	opts := append([]node.Option{node.WithLogger(i.log)}, i.nodeOpts...)
	in, err := install.New(install.Config{
		Site: site, Secrets: bundle, Cluster: i.cluster,
		Expected: node.Expected{UKISigningKeyFingerprint: site.SecureBoot.UKISigningKeyFingerprint, PCRSigningKeyFingerprint: site.SecureBoot.PCRSigningKeyFingerprint},
		Clients:  install.NodeClients(opts...), Progress: i.progress, Timeouts: i.timeouts, Logger: i.log,
	})
	if err != nil {
		return nil, fmt.Errorf("prepare install: %w", err)
	}
	i.in = in
	return in, nil
}

// target is how to reach machine m: its leased address, the pinned
// fingerprint, and for the virtual lab's guests a dialer inside the lab's
// network namespace.
func (i *Install) target(m talos.Machine, mv *MachineView, fp string) install.Target {
	addr := mv.IP
	if i.addrFor != nil {
		addr = i.addrFor(mv.IP)
	}
	t := install.Target{Machine: m, Addr: addr, Fingerprint: fp}
	if i.lab != nil {
		if ns := i.lab.netnsFor(mv.MAC); ns != "" {
			t.Dial = netnsDialer(ns)
		}
	}
	return t
}

// netnsDialer creates each TCP socket inside the named network namespace.
func netnsDialer(ns string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := netns.Do(ns, func() error {
			// An IP literal: one connect on this (namespace-switched) thread,
			// no resolver goroutines.
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dial %s in namespace %s: %w", addr, ns, err)
		}
		return c, nil
	}
}

func (i *Install) publish() {
	if i.bus != nil {
		i.bus.Publish("install:changed", i.view())
	}
}

func (i *Install) machineViews() []MachineView {
	if i.machines == nil {
		return nil
	}
	return i.machines.List()
}

// view builds the Install step from the site, the discovered machines and the runs.
func (i *Install) view() InstallView {
	site, bundle := i.site.installInputs()
	i.restore(bundle)
	views := i.machineViews()
	v := InstallView{Nodes: []InstallNode{}, Blockers: siteBlockers(site, bundle)}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cluster != nil && sameCluster(i.bundle, bundle) {
		st := i.cluster.State()
		v.Bootstrapped, v.BootstrapNode, v.Healthy, v.Kubeconfig = st.Bootstrapped, st.BootstrapNode, st.Healthy, st.Kubeconfig
	}
	if site == nil {
		return v
	}
	for _, m := range site.Machines {
		n := InstallNode{State: nodeIdle, Steps: pendingSteps()}
		if r := i.runs[machineKey(m)]; r != nil {
			n = r.node
			n.Steps = slices.Clone(r.node.Steps)
			if r.node.Evidence != nil {
				ev := *r.node.Evidence
				n.Evidence = &ev
			}
		}
		n.MAC, n.UUID, n.Hostname, n.Role = m.MAC, m.UUID, m.Hostname, string(m.Role)
		mv := findMachine(views, m)
		if mv != nil {
			n.IP, n.Serial, n.SecureBoot, n.TPM, n.Fingerprint = mv.IP, mv.Attrs["serial"], mv.Attrs["secureBoot"], mv.Attrs["tpm"], mv.Attrs["fingerprint"]
			if n.MAC == "" {
				n.MAC = mv.MAC
			}
		}
		n.Ready, n.Blocker = nodeReadiness(n, mv)
		v.Nodes = append(v.Nodes, n)
	}
	return v
}

// nodeReadiness says whether the node can be installed now and why not; a
// SecureBoot-off or TPM-less node is allowed with a warning (Talos refuses it
// with its own words, which the technician then sees).
func nodeReadiness(n InstallNode, mv *MachineView) (bool, string) {
	switch {
	case n.State == nodeRunning:
		return false, ""
	case n.State == nodeVerified || n.State == nodeNotVerified || n.State == nodeInstalled:
		return false, ""
	case mv == nil:
		return false, "Not seen on the network yet"
	case n.Fingerprint == "":
		return false, "Not in maintenance mode yet"
	case mv.Stage == "installing" || mv.Stage == "running":
		return false, "Already " + mv.Stage + " (Talos says so): not in maintenance mode"
	case n.IP == "":
		return false, "No address from Onramp's leases yet"
	case n.SecureBoot == "off":
		return true, "SecureBoot is off: enroll the keys first"
	case n.TPM == "absent":
		return true, "No TPM: the disk keys cannot be sealed, Talos will refuse the config"
	}
	return true, ""
}

// siteBlockers are the site-wide reasons nothing can be installed.
func siteBlockers(site *talos.Site, bundle *secrets.Bundle) []string {
	b := []string{}
	if site == nil {
		return append(b, blockNoSite)
	}
	if len(site.Problems()) > 0 {
		b = append(b, blockProblems)
	}
	if bundle == nil {
		b = append(b, blockNoSecrets)
	}
	if !site.SecureBoot.Complete() {
		b = append(b, blockNoImageKeys)
	}
	return b
}

// sameCluster says whether two bundles are the same cluster's secrets (the
// vault may load the bundle again as a new value).
func sameCluster(a, b *secrets.Bundle) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil || a.Cluster == nil || b.Cluster == nil {
		return false
	}
	return a.Cluster.ID == b.Cluster.ID && a.Cluster.ID != ""
}

func pendingSteps() []InstallStep {
	out := make([]InstallStep, 0, len(install.Steps))
	for _, s := range install.Steps {
		out = append(out, InstallStep{Name: string(s), Title: s.Title(), State: string(install.StatePending)})
	}
	return out
}

// machineKey is the key talos/install reports updates under.
func machineKey(m talos.Machine) string { return m.Key() }

// siteMachine finds the site machine a MAC from the view names: by MAC, or
// for a machine the site knows by UUID only, through the discovered machine
// with that MAC.
func siteMachine(site *talos.Site, views []MachineView, mac string) (talos.Machine, bool) {
	if m, ok := site.Machine(mac); ok || mac == "" {
		return m, ok
	}
	for _, mv := range views {
		if !equalMAC(mv.MAC, mac) {
			continue
		}
		for _, uuid := range []string{mv.UUID, mv.Attrs["uuid"]} {
			if m, ok := site.Machine(uuid); ok && uuid != "" && m.MAC == "" {
				return m, true
			}
		}
	}
	return talos.Machine{}, false
}

// findMachine finds the discovered machine of a site machine, by MAC, else UUID.
func findMachine(views []MachineView, m talos.Machine) *MachineView {
	for k := range views {
		mv := &views[k]
		if m.MAC != "" && equalMAC(mv.MAC, m.MAC) {
			return mv
		}
		if m.UUID != "" && (strings.EqualFold(mv.UUID, m.UUID) || strings.EqualFold(mv.Attrs["uuid"], m.UUID)) {
			return mv
		}
	}
	return nil
}

func equalMAC(a, b string) bool {
	ha, err1 := net.ParseMAC(a)
	hb, err2 := net.ParseMAC(b)
	if err1 != nil || err2 != nil {
		return strings.EqualFold(a, b)
	}
	return ha.String() == hb.String()
}
