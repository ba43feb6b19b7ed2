package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cosi-project/runtime/pkg/state"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/api/security"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
)

// Stage is where the simulated node is in its life.
type Stage string

// Stages, named after machine.MachineStatusEvent stages.
const (
	StageBooting     Stage = "booting"
	StageMaintenance Stage = "maintenance"
	StageInstalling  Stage = "installing"
	StageRunning     Stage = "running" // installed and serving mTLS
)

// EventPublisher receives the node's events, machinery machine.*Event
// messages (see SiderolinkSink).
type EventPublisher interface {
	Publish(ctx context.Context, ev proto.Message) error
}

// Config configures a simulated node. Every source of hardware facts is a function so
// tests inject fakes; DefaultSources reads them from a Linux guest.
type Config struct {
	// ListenAddr is the Talos API address, ":50000" on a node.
	ListenAddr string
	// StateDir keeps the install marker, sealed key blobs and encrypted config
	// across reboots (the lab puts it on the guest's virtual disk).
	StateDir string

	Hardware func() (Hardware, error)
	Disks    func() ([]Disk, error)
	Links    func() ([]Link, error)
	Firmware func() (Firmware, error)
	// TPM is the node's TPM 2.0 (nil: the machine has no TPM).
	TPM transport.TPM

	// UKISigningKeyFingerprint and PCRSigningKeyFingerprint are reported in
	// SecurityState as Talos reports them for the booted UKI (the lab passes them on
	// the kernel command line: the simulator cannot measure its own image).
	UKISigningKeyFingerprint string
	PCRSigningKeyFingerprint string
	BootedWithUKI            bool

	// ConfigURL, when set, is fetched in maintenance mode and applied like
	// ApplyConfiguration (talos.config=).
	ConfigURL string
	// Events, when set, receives the node's events (machine status, install
	// sequence, services). Otherwise EventsSink (talos.events.sink=) is
	// dialled, and an applied config's EventSinkConfig replaces it, as in
	// Talos. Events wait in a bounded backlog until a sink takes them.
	Events     EventPublisher
	EventsSink string
	// KmsgURLs (talos.logging.kernel=) receive the kernel log as Talos sends
	// it (JSON lines, tcp:// or udp://), together with the applied config's
	// KmsgLogConfig URLs. Kmsg is the kernel log (DevKmsg in a guest); nil:
	// the simulator's console lines stand in for it.
	KmsgURLs []string
	Kmsg     KmsgSource

	// Console receives the lines Talos prints on the console (the certificate
	// fingerprint). Default io.Discard.
	Console io.Writer
	// CertIPs are the addresses put in server certificates; default: all addresses
	// of the host's interfaces.
	CertIPs func() []net.IP

	// InstallDelay is how long "install + reboot" takes after an apply (the API is
	// down meanwhile). EtcdStartDelay is how long etcd takes to turn healthy after
	// bootstrap.
	InstallDelay   time.Duration
	EtcdStartDelay time.Duration

	// TrustdAddr is where an installed control plane serves trustd (":50001").
	TrustdAddr string
	// TrustdEndpoints are where an installed worker asks for its API certificate;
	// default: the cluster endpoint's host, port 50001.
	TrustdEndpoints []string

	// TalosVersion is the version tag reported by MachineService.Version.
	TalosVersion string

	Clock  func() time.Time
	Logger *slog.Logger
}

// Sim is one simulated node.
type Sim struct {
	cfg    Config
	log    *slog.Logger
	sealer *sealer

	ready     chan struct{}
	readyOnce sync.Once
	rebootCh  chan struct{}

	events *eventQueue
	kmsg   *kmsgForwarder

	mu          sync.Mutex
	stage       Stage
	addr        net.Addr
	trustdAddr  net.Addr
	fingerprint string
	fw          Firmware
	st          state.State
	inst        *installedNode // nil in maintenance mode
	applying    bool           // an apply is running or done (until the next boot)
}

// New checks cfg, fills defaults and returns a node that starts on Run.
func New(cfg Config) (*Sim, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("new simulator: StateDir is required")
	}

	if cfg.ListenAddr == "" {
		cfg.ListenAddr = ":50000"
	}

	if cfg.Hardware == nil || cfg.Disks == nil || cfg.Firmware == nil {
		return nil, errors.New("new simulator: Hardware, Disks and Firmware sources are required")
	}

	if cfg.Links == nil {
		cfg.Links = ReadLinks
	}

	if cfg.Console == nil {
		cfg.Console = io.Discard
	}

	if cfg.CertIPs == nil {
		cfg.CertIPs = hostIPs
	}

	if cfg.TrustdAddr == "" {
		cfg.TrustdAddr = ":50001"
	}

	if cfg.TalosVersion == "" {
		cfg.TalosVersion = "v1.14.1"
	}

	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}

	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	if cfg.Kmsg == nil {
		ck := newConsoleKmsg(cfg.Clock)
		cfg.Console = io.MultiWriter(cfg.Console, ck)
		cfg.Kmsg = ck.source
	}

	log := cfg.Logger.With("component", "talossim")
	s := &Sim{
		cfg:      cfg,
		log:      log,
		ready:    make(chan struct{}),
		rebootCh: make(chan struct{}, 1),
		stage:    StageBooting,
		events:   newEventQueue(log),
		kmsg:     newKmsgForwarder(log, cfg.Kmsg, cfg.KmsgURLs),
	}

	if cfg.Events != nil {
		s.events.setPublisher(cfg.Events)
	}

	if cfg.TPM != nil {
		s.sealer = &sealer{tpm: cfg.TPM}
	}

	return s, nil
}

// DefaultSources fills the hardware sources of cfg from a Linux guest: SMBIOS from
// /sys/class/dmi/id, disks from /sys/block, firmware from /sys/firmware.
func DefaultSources(cfg *Config) {
	cfg.Hardware = func() (Hardware, error) { return ReadDMI("/sys/class/dmi/id") }
	cfg.Disks = func() ([]Disk, error) { return ReadBlock("/sys/block") }
	cfg.Links = ReadLinks
	cfg.Firmware = func() (Firmware, error) { return ReadFirmware("/sys/firmware") }
}

func hostIPs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return []net.IP{net.IPv4(127, 0, 0, 1)}
	}

	var ips []net.IP

	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}

	return ips
}

// Ready is closed once the API listens for the first time.
func (s *Sim) Ready() <-chan struct{} { return s.ready }

// Addr is the API's listening address (nil before Ready).
func (s *Sim) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.addr
}

// TrustdAddr is the address of the control plane's trustd (nil unless serving).
func (s *Sim) TrustdAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.trustdAddr
}

// Stage is the node's current stage.
func (s *Sim) Stage() Stage {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.stage
}

// Fingerprint is the SPKI fingerprint of the current maintenance certificate ("" when
// installed).
func (s *Sim) Fingerprint() string {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.fingerprint
}

func (s *Sim) setStage(ctx context.Context, st Stage) {
	s.mu.Lock()
	s.stage = st
	s.mu.Unlock()

	s.log.Info("stage", "stage", string(st))
	// The virtual lab reads the node's state from its serial console
	// (lab/status.go: the last "ONRAMP-LAB: state=..." line wins).
	labState := map[Stage]string{StageMaintenance: "maintenance", StageInstalling: "installing", StageRunning: "installed"}[st]
	if labState != "" {
		fmt.Fprintf(s.cfg.Console, "ONRAMP-LAB: state=%s\n", labState)
	}

	stage := map[Stage]machine.MachineStatusEvent_MachineStage{
		StageBooting:     machine.MachineStatusEvent_BOOTING,
		StageMaintenance: machine.MachineStatusEvent_MAINTENANCE,
		StageInstalling:  machine.MachineStatusEvent_INSTALLING,
		StageRunning:     machine.MachineStatusEvent_RUNNING,
	}[st]

	s.publish(&machine.MachineStatusEvent{Stage: stage, Status: &machine.MachineStatusEvent_MachineStatus{Ready: st == StageRunning || st == StageMaintenance}})
}

// publish queues an event for the sink; it never blocks.
func (s *Sim) publish(ev proto.Message) { s.events.add(ev) }

// PendingEvents is how many events wait for a sink.
func (s *Sim) PendingEvents() int { return s.events.pending() }

// applyRuntimeConfig points the event sink and the kernel log at what an
// applied (or stored) config says, like Talos' EventSinkConfig and
// KmsgLogConfig controllers: the config's sink replaces the command line's,
// its kernel log URLs are added to the command line's.
func (s *Sim) applyRuntimeConfig(cfg config.Provider) {
	if cfg == nil || cfg.Runtime() == nil {
		return
	}

	if ep := cfg.Runtime().EventsEndpoint(); ep != nil && *ep != "" && s.cfg.Events == nil {
		if err := s.events.useSink(*ep); err != nil {
			s.log.Warn("event sink from config", "endpoint", *ep, "err", err)
		}
	}

	var urls []string
	for _, u := range cfg.Runtime().KmsgLogURLs() {
		urls = append(urls, u.String())
	}

	s.kmsg.setConfig(urls)
}

// requestReboot asks Run to stop serving and boot again (after an install).
func (s *Sim) requestReboot() {
	select {
	case s.rebootCh <- struct{}{}:
	default:
	}
}

// Run boots the node and serves the Talos API until ctx is done. An applied config
// "reboots" the node into installed mode; a marker left in StateDir by an earlier
// run boots it straight into installed mode, like a real reboot.
func (s *Sim) Run(ctx context.Context) error {
	fw, err := s.cfg.Firmware()
	if err != nil {
		return fmt.Errorf("read firmware: %w", err)
	}

	s.mu.Lock()
	s.fw = fw
	s.mu.Unlock()

	var bg sync.WaitGroup
	defer bg.Wait()

	bgCtx, bgCancel := context.WithCancel(ctx)
	defer bgCancel()

	if s.cfg.Events == nil && s.cfg.EventsSink != "" {
		if err := s.events.useSink(s.cfg.EventsSink); err != nil {
			s.log.Warn("event sink from the command line", "endpoint", s.cfg.EventsSink, "err", err)
		}
	}

	bg.Add(2)

	go func() {
		defer bg.Done()

		s.events.run(bgCtx)
	}()

	go func() {
		defer bg.Done()

		s.kmsg.run(bgCtx)
	}()

	for {
		s.setStage(ctx, StageBooting)

		creds, installed, err := s.boot(ctx)
		if err != nil {
			return err
		}

		s.mu.Lock()
		inst := s.inst
		s.mu.Unlock()

		if err = s.serve(ctx, creds, inst, func() {
			switch {
			case !installed && s.cfg.ConfigURL != "":
				bg.Add(1)

				go func() {
					defer bg.Done()

					s.fetchAndApply(bgCtx)
				}()
			case installed && inst.needTrustd:
				bg.Add(1)

				go func() {
					defer bg.Done()

					s.fetchCertificate(bgCtx, inst)
				}()
			}
		}); err != nil {
			return err
		}

		if ctx.Err() != nil {
			return nil
		}

		// reboot requested: the install runs while the API is down, with
		// the events Talos' install sequence publishes
		s.setStage(ctx, StageInstalling)
		s.publish(&machine.SequenceEvent{Sequence: "install", Action: machine.SequenceEvent_START})
		s.publish(&machine.PhaseEvent{Phase: "install", Action: machine.PhaseEvent_START})
		s.publish(&machine.TaskEvent{Task: "install", Action: machine.TaskEvent_START})
		fmt.Fprintf(s.cfg.Console, "[talos] installing Talos to the system disk\n")

		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.InstallDelay):
		}

		s.publish(&machine.TaskEvent{Task: "install", Action: machine.TaskEvent_STOP})
		s.publish(&machine.PhaseEvent{Phase: "install", Action: machine.PhaseEvent_STOP})
		s.publish(&machine.SequenceEvent{Sequence: "install", Action: machine.SequenceEvent_STOP})
		s.publish(&machine.MachineStatusEvent{Stage: machine.MachineStatusEvent_REBOOTING, Status: &machine.MachineStatusEvent_MachineStatus{}})
		fmt.Fprintf(s.cfg.Console, "[talos] install finished, rebooting\n")
	}
}

// boot builds this boot's COSI state and TLS credentials.
func (s *Sim) boot(ctx context.Context) (*tls.Config, bool, error) {
	st, err := s.buildState(ctx)
	if err != nil {
		return nil, false, err
	}

	marker, err := readMarker(s.cfg.StateDir)
	if err != nil {
		return nil, false, err
	}

	if marker == nil {
		crt, err := selfSigned(s.cfg.Clock(), s.cfg.CertIPs(), nil)
		if err != nil {
			return nil, false, fmt.Errorf("make maintenance certificate: %w", err)
		}

		fp := SPKIFingerprint(crt.Leaf)

		s.mu.Lock()
		s.st, s.inst, s.fingerprint, s.applying = st, nil, fp, false
		s.mu.Unlock()

		fmt.Fprintf(s.cfg.Console, "[talos] maintenance mode: certificate fingerprint (SHA-256 of SPKI) %s\n", fp)

		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{crt}}, false, nil
	}

	inst, err := s.bootInstalled(ctx, st, marker)
	if err != nil {
		return nil, false, err
	}

	s.mu.Lock()
	s.st, s.inst, s.fingerprint = st, inst, ""
	s.mu.Unlock()

	return inst.tls, true, nil
}

// serve runs one boot's gRPC server until ctx is done or a reboot is requested.
func (s *Sim) serve(ctx context.Context, creds *tls.Config, inst *installedNode, onListen func()) error {
	installed := inst != nil

	s.mu.Lock()
	addr := s.cfg.ListenAddr
	if s.addr != nil {
		addr = s.addr.String() // same port across reboots, also when ListenAddr had port 0
	}
	s.mu.Unlock()

	var lc net.ListenConfig

	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}

	srv := s.grpcServer(creds, installed)

	var trustd *grpc.Server

	if installed && inst.serveTrustd {
		tl, err := lc.Listen(ctx, "tcp", s.cfg.TrustdAddr)
		if err != nil {
			l.Close() //nolint:errcheck

			return fmt.Errorf("listen on %s: %w", s.cfg.TrustdAddr, err)
		}

		trustd = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: inst.certs.get})))
		security.RegisterSecurityServiceServer(trustd, &trustdService{s: s, inst: inst})

		s.mu.Lock()
		s.trustdAddr = tl.Addr()
		s.mu.Unlock()

		go trustd.Serve(tl) //nolint:errcheck // stopped below

		defer func() {
			trustd.Stop()

			s.mu.Lock()
			s.trustdAddr = nil
			s.mu.Unlock()
		}()
	}

	s.mu.Lock()
	s.addr = l.Addr()
	s.mu.Unlock()

	if installed {
		s.setStage(ctx, StageRunning)
		s.publishServices(inst)
	} else {
		s.setStage(ctx, StageMaintenance)
	}

	s.readyOnce.Do(func() { close(s.ready) })
	onListen()

	errCh := make(chan error, 1)

	go func() { errCh <- srv.Serve(l) }()

	var serveErr error

	select {
	case <-ctx.Done():
	case <-s.rebootCh:
	case serveErr = <-errCh:
	}

	stopped := make(chan struct{})

	go func() {
		srv.GracefulStop()
		close(stopped)
	}()

	select {
	case <-stopped:
	case <-time.After(2 * time.Second): // open Watch streams never end by themselves
		srv.Stop()
		<-stopped
	}

	if serveErr == nil {
		serveErr = <-errCh
	}

	if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) && !isServerStopped(serveErr) {
		return fmt.Errorf("serve Talos API: %w", serveErr)
	}

	return nil
}

// publishServices reports the installed node's services as Talos' service
// runner does: apid and trustd running, kubelet running, etcd waiting for
// bootstrap on a control plane that has none yet (running once it has).
func (s *Sim) publishServices(inst *installedNode) {
	s.mu.Lock()
	cp := inst.marker.MachineType == "controlplane"
	bootstrapped := inst.marker.Bootstrapped
	stateErr := inst.stateErr
	s.mu.Unlock()

	healthy := &machine.ServiceHealth{Healthy: true}

	s.publish(&machine.ServiceStateEvent{Service: "apid", Action: machine.ServiceStateEvent_RUNNING, Message: "Health check successful", Health: healthy})

	if stateErr != nil {
		s.publish(&machine.ServiceStateEvent{Service: "kubelet", Action: machine.ServiceStateEvent_FAILED, Message: stateErr.Error()})

		return
	}

	if !cp {
		s.publish(&machine.ServiceStateEvent{Service: "kubelet", Action: machine.ServiceStateEvent_RUNNING, Message: "Health check successful", Health: healthy})

		return
	}

	s.publish(&machine.ServiceStateEvent{Service: "trustd", Action: machine.ServiceStateEvent_RUNNING, Message: "Health check successful", Health: healthy})

	if bootstrapped {
		s.publishEtcdRunning()

		return
	}

	s.publish(&machine.ServiceStateEvent{Service: "etcd", Action: machine.ServiceStateEvent_PREPARING, Message: "Waiting for etcd to be bootstrapped", Health: &machine.ServiceHealth{Unknown: true}})
	s.publish(&machine.ServiceStateEvent{Service: "kubelet", Action: machine.ServiceStateEvent_RUNNING, Message: "Waiting for the API server", Health: &machine.ServiceHealth{}})
}

// publishEtcdRunning reports etcd and kubelet healthy.
func (s *Sim) publishEtcdRunning() {
	healthy := &machine.ServiceHealth{Healthy: true}

	s.publish(&machine.ServiceStateEvent{Service: "etcd", Action: machine.ServiceStateEvent_RUNNING, Message: "Health check successful", Health: healthy})
	s.publish(&machine.ServiceStateEvent{Service: "kubelet", Action: machine.ServiceStateEvent_RUNNING, Message: "Health check successful", Health: healthy})
}
