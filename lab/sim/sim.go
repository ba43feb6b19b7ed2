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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
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

// EventPublisher receives the node's machine status events (see SiderolinkSink).
type EventPublisher interface {
	Publish(ctx context.Context, ev *machine.MachineStatusEvent) error
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
	// Events, when set, receives machine status events (talos.events.sink=).
	Events EventPublisher

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

	s := &Sim{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "talossim"),
		ready:    make(chan struct{}),
		rebootCh: make(chan struct{}, 1),
		stage:    StageBooting,
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

	if s.cfg.Events == nil {
		return
	}

	stage := map[Stage]machine.MachineStatusEvent_MachineStage{
		StageBooting:     machine.MachineStatusEvent_BOOTING,
		StageMaintenance: machine.MachineStatusEvent_MAINTENANCE,
		StageInstalling:  machine.MachineStatusEvent_INSTALLING,
		StageRunning:     machine.MachineStatusEvent_RUNNING,
	}[st]

	ev := &machine.MachineStatusEvent{Stage: stage, Status: &machine.MachineStatusEvent_MachineStatus{Ready: st == StageRunning || st == StageMaintenance}}

	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	if err := s.cfg.Events.Publish(pctx, ev); err != nil {
		s.log.Warn("publish event", "stage", string(st), "err", err)
	}
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

		// reboot requested: the install runs while the API is down
		s.setStage(ctx, StageInstalling)

		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.InstallDelay):
		}
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
