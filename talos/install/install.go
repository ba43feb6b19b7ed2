// Package install is Onramp's per-node install workflow for Talos Linux, as a
// reusable orchestrator with no UI in it:
//
//	config    generate the node's machine config from the site (machinery, strict
//	          validation in metal mode)
//	apply     send it over the maintenance API's TLS (port 50000), pinned to the
//	          certificate fingerprint the technician compared with the node's console
//	install   wait until the node installed, rebooted and answers over mutual TLS
//	          with the site's talosconfig (client certificate, role os:admin)
//	bootstrap bootstrap etcd on the site's first control-plane node, exactly once per
//	          site even when several nodes install at the same time; every other node
//	          skips the step with a message
//	health    wait until etcd (control planes) and kubelet run healthy; the first
//	          healthy control plane gives the admin kubeconfig, held in memory
//	verify    node.Verify: SecureBoot on, the UKI and PCR signing keys are the site's,
//	          STATE and EPHEMERAL LUKS2 with a TPM key — or "not verified" with the
//	          exact reasons
//
// Every step runs under the caller's context (cancellable) and its own timeout;
// the Talos calls retry transient failures with backoff (talos/node). Progress is
// reported in plain words through a callback. The node clients are small
// interfaces owned here, so tests run the workflow against fakes or the
// in-process Talos simulator (lab/sim).
//
// Secrets (the bundle, talosconfig, kubeconfig) stay in memory and are never
// logged or put in progress messages.
package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"google.golang.org/grpc/status"

	"onramp/talos"
	"onramp/talos/node"
)

// Step is one step of a node's install.
type Step string

// The steps, in order.
const (
	StepConfig    Step = "config"
	StepApply     Step = "apply"
	StepInstall   Step = "install"
	StepBootstrap Step = "bootstrap"
	StepHealth    Step = "health"
	StepVerify    Step = "verify"
)

// Steps is the fixed order of the steps.
var Steps = []Step{StepConfig, StepApply, StepInstall, StepBootstrap, StepHealth, StepVerify}

// Title is the step's name for the technician.
func (s Step) Title() string {
	switch s {
	case StepConfig:
		return "Generate config"
	case StepApply:
		return "Apply over pinned TLS"
	case StepInstall:
		return "Install and reboot"
	case StepBootstrap:
		return "Bootstrap etcd"
	case StepHealth:
		return "Kubernetes healthy"
	case StepVerify:
		return "Verify SecureBoot and encryption"
	}

	return string(s)
}

// State is a step's state.
type State string

// Step states.
const (
	StatePending State = "pending"
	StateRunning State = "running"
	StateDone    State = "done"
	StateFailed  State = "failed"
	StateSkipped State = "skipped"
)

// Update is one progress report of one node.
type Update struct {
	Key     string // the machine's key (MAC, else UUID)
	Step    Step
	State   State // running for progress within a step
	Message string
	Err     error         // set when State is failed
	Took    time.Duration // set when the step ended
	// ConfigSHA256 is the SHA-256 (hex) of the machine config the node
	// accepted; set on the apply step's done update.
	ConfigSHA256 string
}

// Target is one machine to install.
type Target struct {
	Machine talos.Machine
	// Addr is the node's address (host or host:port; port 50000 by default).
	Addr string
	// Fingerprint is the maintenance certificate's fingerprint to pin (required).
	Fingerprint string
	// Dial, when set, makes the node's TCP connections (e.g. inside a network
	// namespace).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// MaintenanceClient is what the apply step needs (node.MaintenanceClient).
type MaintenanceClient interface {
	Apply(ctx context.Context, cfg []byte) error
	Close() error
}

// InstalledClient is what the later steps need (node.InstalledClient).
type InstalledClient interface {
	node.EvidenceSource
	WaitReady(ctx context.Context) error
	Bootstrap(ctx context.Context) (node.BootstrapResult, error)
	WaitHealthy(ctx context.Context) error
	Kubeconfig(ctx context.Context) ([]byte, error)
	Close() error
}

// Clients opens node clients; progress receives the clients' own steps and retries.
type Clients interface {
	Maintenance(ctx context.Context, t Target, progress func(node.Progress)) (MaintenanceClient, error)
	Installed(ctx context.Context, t Target, talosconfig []byte, progress func(node.Progress)) (InstalledClient, error)
}

// NodeClients are Clients over talos/node; opts apply to every client (timeouts,
// retries, logger). The target's fingerprint is pinned and its Dial used.
func NodeClients(opts ...node.Option) Clients { return nodeClients(opts) }

type nodeClients []node.Option

func (o nodeClients) opts(t Target, progress func(node.Progress)) []node.Option {
	opts := append([]node.Option{}, o...)
	if t.Dial != nil {
		opts = append(opts, node.WithDialer(t.Dial))
	}

	return append(opts, node.WithProgress(progress))
}

func (o nodeClients) Maintenance(ctx context.Context, t Target, progress func(node.Progress)) (MaintenanceClient, error) {
	return node.Maintenance(ctx, t.Addr, append(o.opts(t, progress), node.WithPinnedFingerprint(t.Fingerprint))...)
}

func (o nodeClients) Installed(ctx context.Context, t Target, talosconfig []byte, progress func(node.Progress)) (InstalledClient, error) {
	return node.Installed(ctx, t.Addr, talosconfig, o.opts(t, progress)...)
}

// Timeouts bound each step; zero fields take the defaults.
type Timeouts struct {
	Config, Apply, Install, Bootstrap, Health, Verify time.Duration
}

// DefaultTimeouts are generous for real hardware: an install pulls the installer
// image and reboots twice.
var DefaultTimeouts = Timeouts{
	Config:    time.Minute,
	Apply:     3 * time.Minute,
	Install:   30 * time.Minute,
	Bootstrap: 5 * time.Minute,
	Health:    30 * time.Minute,
	Verify:    3 * time.Minute,
}

func (t Timeouts) of(s Step) time.Duration {
	d := map[Step][2]time.Duration{
		StepConfig: {t.Config, DefaultTimeouts.Config}, StepApply: {t.Apply, DefaultTimeouts.Apply},
		StepInstall: {t.Install, DefaultTimeouts.Install}, StepBootstrap: {t.Bootstrap, DefaultTimeouts.Bootstrap},
		StepHealth: {t.Health, DefaultTimeouts.Health}, StepVerify: {t.Verify, DefaultTimeouts.Verify},
	}[s]
	if d[0] > 0 {
		return d[0]
	}

	return d[1]
}

// Config configures an Installer.
type Config struct {
	// Site is the cluster; it must validate.
	Site *talos.Site
	// Secrets is the site's secrets bundle (required: configs of one site must share it).
	Secrets *secrets.Bundle
	// Expected are the site image's signing keys for verification.
	Expected node.Expected
	// Clients default to NodeClients().
	Clients Clients
	// Cluster carries bootstrap-once, health and the kubeconfig across Installers of
	// the same site (e.g. after the site was edited); nil: a new one.
	Cluster *Cluster
	// Progress receives every update (from the node's goroutine; must not block long).
	Progress func(Update)
	Timeouts Timeouts
	Logger   *slog.Logger
}

// Installer installs the machines of one site.
type Installer struct {
	cfg         Config
	gen         *talos.Generator
	talosconfig []byte
	firstCP     string // key of the site's first control-plane machine
	log         *slog.Logger
}

// New prepares an installer: the generator and the site's talosconfig.
func New(cfg Config) (*Installer, error) {
	if cfg.Site == nil {
		return nil, errors.New("new installer: no site")
	}

	if cfg.Secrets == nil {
		return nil, errors.New("new installer: no secrets bundle: generate the cluster secrets first")
	}

	if cfg.Clients == nil {
		cfg.Clients = NodeClients()
	}

	if cfg.Cluster == nil {
		cfg.Cluster = NewCluster()
	}

	if cfg.Progress == nil {
		cfg.Progress = func(Update) {}
	}

	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	gen, err := talos.NewGenerator(cfg.Site, talos.WithSecrets(cfg.Secrets))
	if err != nil {
		return nil, fmt.Errorf("new installer: %w", err)
	}

	tc, err := gen.Talosconfig()
	if err != nil {
		return nil, fmt.Errorf("new installer: %w", err)
	}

	in := &Installer{cfg: cfg, gen: gen, talosconfig: tc, log: cfg.Logger.With("component", "talos/install")}

	for _, m := range cfg.Site.Machines {
		if m.Role == talos.RoleControlPlane {
			in.firstCP = m.Key()

			break
		}
	}

	return in, nil
}

// Talosconfig is the site's talosconfig (key material: keep it in memory).
func (in *Installer) Talosconfig() []byte { return append([]byte(nil), in.talosconfig...) }

// Cluster is the per-site state this installer shares.
func (in *Installer) Cluster() *Cluster { return in.cfg.Cluster }

// StepError says which step failed.
type StepError struct {
	Step Step
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }

func (e *StepError) Unwrap() error { return e.Err }

// Reason is err in the node's own words: the message of a Talos (gRPC) status when
// there is one (e.g. Talos' refusal of a config), else the whole error.
func Reason(err error) string {
	if err == nil {
		return ""
	}

	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		if msg := se.GRPCStatus().Message(); msg != "" {
			return msg
		}
	}

	return err.Error()
}

// run wraps one step: updates, timeout, duration.
func (in *Installer) run(ctx context.Context, key string, k *tracker, s Step, fn func(ctx context.Context) (msg string, skipped bool, err error)) error {
	start := time.Now()

	in.cfg.Progress(Update{Key: key, Step: s, State: StateRunning, Message: s.Title()})
	k.set(s, true)
	defer k.set(s, false)

	sctx, cancel := context.WithTimeout(ctx, in.cfg.Timeouts.of(s))
	defer cancel()

	msg, skipped, err := fn(sctx)
	took := time.Since(start)

	switch {
	case err != nil:
		// The node's last answer is detail here, not the reason (%v: Reason must
		// not pick a Talos status out of it).
		if ctx.Err() != nil {
			err = fmt.Errorf("cancelled: %w (last: %v)", ctx.Err(), err)
		} else if sctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w (last: %v)", in.cfg.Timeouts.of(s), context.DeadlineExceeded, err)
		}

		in.cfg.Progress(Update{Key: key, Step: s, State: StateFailed, Message: Reason(err), Err: err, Took: took})
		in.log.Info("step failed", "node", key, "step", s, "took", took, "err", err)

		return &StepError{Step: s, Err: err}
	case skipped:
		in.cfg.Progress(Update{Key: key, Step: s, State: StateSkipped, Message: msg, Took: took})
	default:
		u := Update{Key: key, Step: s, State: StateDone, Message: msg, Took: took}
		if s == StepApply {
			u.ConfigSHA256 = k.configSHA()
		}

		in.cfg.Progress(u)
	}

	in.log.Info("step", "node", key, "step", s, "took", took, "skipped", skipped)

	return nil
}

// tracker follows a node's current step, so the node clients' own reports (one
// client serves several steps) are attributed to the step that runs.
type tracker struct {
	mu   sync.Mutex
	step Step
	open bool
	// applied is the SHA-256 of the config the node accepted.
	applied string
}

func (k *tracker) setConfigSHA(sum string) {
	k.mu.Lock()
	defer k.mu.Unlock()

	k.applied = sum
}

func (k *tracker) configSHA() string {
	k.mu.Lock()
	defer k.mu.Unlock()

	return k.applied
}

func (k *tracker) set(s Step, open bool) {
	k.mu.Lock()
	defer k.mu.Unlock()

	k.step, k.open = s, open
}

// progress turns the node clients' reports into plain-words updates of the
// running step; reports between steps are dropped.
func (in *Installer) progress(key string, k *tracker) func(node.Progress) {
	return func(p node.Progress) {
		k.mu.Lock()
		s, open := k.step, k.open
		k.mu.Unlock()

		if !open {
			return
		}

		msg := p.Message
		if p.Err != nil {
			msg = fmt.Sprintf("%s (attempt %d: %s)", p.Message, p.Attempt, Reason(p.Err))
		}

		in.cfg.Progress(Update{Key: key, Step: s, State: StateRunning, Message: msg})
	}
}

// Run installs one node through every step and verifies it. The evidence is
// returned when the verify step ran (verified or not); a failed step returns a
// *StepError. Run may be called concurrently for different nodes of the site.
func (in *Installer) Run(ctx context.Context, t Target) (node.Evidence, error) {
	key := t.Machine.Key()
	k := &tracker{}

	if t.Fingerprint == "" {
		return node.Evidence{}, &StepError{Step: StepApply, Err: errors.New("no certificate fingerprint to pin: compare it with the node's console first")}
	}

	var cfg []byte

	err := in.run(ctx, key, k, StepConfig, func(context.Context) (string, bool, error) {
		var err error
		if cfg, err = in.gen.NodeConfig(t.Machine); err != nil {
			return "", false, err
		}

		return fmt.Sprintf("%s config for %s generated and validated (%d KiB)", t.Machine.Role, t.Machine.Hostname, (len(cfg)+1023)/1024), false, nil
	})
	if err != nil {
		return node.Evidence{}, err
	}

	err = in.run(ctx, key, k, StepApply, func(ctx context.Context) (string, bool, error) {
		mc, err := in.cfg.Clients.Maintenance(ctx, t, in.progress(key, k))
		if err != nil {
			return "", false, err
		}
		defer mc.Close() //nolint:errcheck

		if err := mc.Apply(ctx, cfg); err != nil {
			return "", false, err
		}

		h := sha256.Sum256(cfg)
		k.setConfigSHA(hex.EncodeToString(h[:]))

		return "configuration accepted by the node (certificate " + t.Fingerprint + ")", false, nil
	})
	if err != nil {
		return node.Evidence{}, err
	}

	ic, err := in.cfg.Clients.Installed(ctx, t, in.talosconfig, in.progress(key, k))
	if err != nil {
		return node.Evidence{}, in.run(ctx, key, k, StepInstall, func(context.Context) (string, bool, error) { return "", false, err })
	}
	defer ic.Close() //nolint:errcheck

	err = in.run(ctx, key, k, StepInstall, func(ctx context.Context) (string, bool, error) {
		if err := ic.WaitReady(ctx); err != nil {
			return "", false, err
		}

		return "installed; the node answers over mutual TLS", false, nil
	})
	if err != nil {
		return node.Evidence{}, err
	}

	if err := in.run(ctx, key, k, StepBootstrap, func(ctx context.Context) (string, bool, error) { return in.bootstrap(ctx, t, ic) }); err != nil {
		return node.Evidence{}, err
	}

	if err := in.run(ctx, key, k, StepHealth, func(ctx context.Context) (string, bool, error) { return in.health(ctx, t, ic) }); err != nil {
		return node.Evidence{}, err
	}

	return in.verify(ctx, t, k, ic)
}

// Verify re-runs verification of an installed node.
func (in *Installer) Verify(ctx context.Context, t Target) (node.Evidence, error) {
	key := t.Machine.Key()
	k := &tracker{}

	ic, err := in.cfg.Clients.Installed(ctx, t, in.talosconfig, in.progress(key, k))
	if err != nil {
		return node.Evidence{}, in.run(ctx, key, k, StepVerify, func(context.Context) (string, bool, error) { return "", false, err })
	}
	defer ic.Close() //nolint:errcheck

	return in.verify(ctx, t, k, ic)
}

func (in *Installer) verify(ctx context.Context, t Target, k *tracker, ic InstalledClient) (node.Evidence, error) {
	var ev node.Evidence

	err := in.run(ctx, t.Machine.Key(), k, StepVerify, func(ctx context.Context) (string, bool, error) {
		var err error
		if ev, err = node.Verify(ctx, ic, in.cfg.Expected); err != nil {
			return "", false, err
		}

		if ev.Verified {
			return "verified: SecureBoot on, the site's signing keys, STATE and EPHEMERAL encrypted with a TPM key", false, nil
		}

		return "not verified: " + strings.Join(ev.Reasons, "; "), false, nil
	})

	return ev, err
}

// bootstrap runs on the site's first control plane only, once per site.
func (in *Installer) bootstrap(ctx context.Context, t Target, ic InstalledClient) (string, bool, error) {
	switch {
	case t.Machine.Role != talos.RoleControlPlane:
		return "workers do not bootstrap etcd", true, nil
	case t.Machine.Key() != in.firstCP:
		first, _ := in.cfg.Site.Machine(in.firstCP)

		return "etcd is bootstrapped on " + first.Hostname + ", the site's first control plane; this node joins it", true, nil
	}

	return in.cfg.Cluster.bootstrapOnce(ctx, t.Machine.Hostname, ic)
}

// health waits for the node's services; a control plane then gives the kubeconfig
// once per site.
func (in *Installer) health(ctx context.Context, t Target, ic InstalledClient) (string, bool, error) {
	if err := ic.WaitHealthy(ctx); err != nil {
		return "", false, err
	}

	if t.Machine.Role != talos.RoleControlPlane {
		return "kubelet healthy", false, nil
	}

	msg := "etcd and kubelet healthy"

	if t.Machine.Key() == in.firstCP {
		in.cfg.Cluster.setHealthy()
	}

	if in.cfg.Cluster.hasKubeconfig() {
		return msg, false, nil
	}

	kc, err := ic.Kubeconfig(ctx)
	if err != nil {
		return "", false, fmt.Errorf("fetch kubeconfig: %w", err)
	}

	in.cfg.Cluster.setKubeconfig(kc)

	return msg + "; admin kubeconfig fetched (kept in memory)", false, nil
}

// Cluster is the per-site state shared by the nodes' runs.
type Cluster struct {
	boot chan struct{} // one bootstrap at a time, cancellable wait

	mu            sync.Mutex
	bootstrapped  bool
	bootstrapNode string
	bootstrapMsg  string
	calls         int
	healthy       bool
	kubeconfig    []byte
}

// NewCluster returns the state of a site not yet bootstrapped.
func NewCluster() *Cluster { return &Cluster{boot: make(chan struct{}, 1)} }

// ClusterState is what the UI shows about the site.
type ClusterState struct {
	Bootstrapped  bool
	BootstrapNode string
	// BootstrapCalls counts Bootstrap RPCs sent (1 after a normal install).
	BootstrapCalls int
	Healthy        bool
	Kubeconfig     bool
}

// Restore sets the state of a site whose nodes were installed before (by an
// earlier run of Onramp, from its record): a bootstrapped site is never
// bootstrapped again. A nil kubeconfig leaves it unfetched.
func (c *Cluster) Restore(st ClusterState, kubeconfig []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.bootstrapped, c.bootstrapNode, c.healthy = st.Bootstrapped, st.BootstrapNode, st.Healthy
	if st.Bootstrapped {
		c.bootstrapMsg = "recorded by an earlier run"
	}

	if kubeconfig != nil {
		c.kubeconfig = append([]byte(nil), kubeconfig...)
	}
}

// State returns the cluster state.
func (c *Cluster) State() ClusterState {
	c.mu.Lock()
	defer c.mu.Unlock()

	return ClusterState{Bootstrapped: c.bootstrapped, BootstrapNode: c.bootstrapNode, BootstrapCalls: c.calls, Healthy: c.healthy, Kubeconfig: c.kubeconfig != nil}
}

// Kubeconfig returns the admin kubeconfig, nil before it was fetched. It is a
// secret: never log it or write it in plaintext.
func (c *Cluster) Kubeconfig() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()

	return append([]byte(nil), c.kubeconfig...)
}

func (c *Cluster) setHealthy() {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.healthy = true
}

func (c *Cluster) hasKubeconfig() bool {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.kubeconfig != nil
}

func (c *Cluster) setKubeconfig(kc []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.kubeconfig = append([]byte(nil), kc...)
}

// bootstrapOnce bootstraps etcd through ic unless the site already is. Concurrent
// callers wait for each other; a failed bootstrap may be retried.
func (c *Cluster) bootstrapOnce(ctx context.Context, hostname string, ic InstalledClient) (string, bool, error) {
	select {
	case c.boot <- struct{}{}:
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
	defer func() { <-c.boot }()

	c.mu.Lock()
	done, on, msg := c.bootstrapped, c.bootstrapNode, c.bootstrapMsg
	if !done {
		c.calls++
	}
	c.mu.Unlock()

	if done {
		return "etcd was already bootstrapped on " + on + " (" + msg + ")", true, nil
	}

	res, err := ic.Bootstrap(ctx)
	if err != nil {
		return "", false, err
	}

	c.mu.Lock()
	c.bootstrapped, c.bootstrapNode, c.bootstrapMsg = true, hostname, res.Message
	c.mu.Unlock()

	return res.Message, false, nil
}
