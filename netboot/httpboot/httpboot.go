// Package httpboot is Onramp's boot HTTP server (HTTP/1.1, RFC 9110/9112):
// it serves the boot assets (kernels, initramfs, UKIs, ISOs) to iPXE and to
// UEFI HTTP boot firmware (UEFI 2.5+ "HTTP Boot", DHCP vendor class
// "HTTPClient"), the iPXE binaries for UEFI HTTP boot, the per-machine iPXE
// script, and, only when switched on, one-shot machine configs.
//
// Routes:
//
//	GET|HEAD /assets/<path>   files from Config.Assets (Range, If-Modified-Since, sendfile)
//	GET|HEAD /boot/<name>     iPXE binaries from Config.BootFiles (same files as TFTP)
//	GET      /ipxe?mac=&uuid= the machine's iPXE script (asks Config.Booter)
//	GET      /config/<token>  a machine config, if Config.ConfigEndpoint != nil
//
// Large files are served by http.ServeContent from an *os.File, so Linux's
// sendfile(2) carries the bytes (for the first few large downloads at once,
// from a poll(2) loop on their own threads: see sendfile.go). Anything that wraps the ResponseWriter here
// implements io.ReaderFrom and delegates, or sendfile would silently turn
// into a userspace copy. The optional per-client rate cap is the exception:
// it paces writes, so it gives up sendfile (some iPXE NIC drivers hang on
// fast large downloads; slow and finished beats fast and hung).
//
// Directory listings are off; every path is confined to its root: "..",
// percent-encoded "%2e%2e" (Go decodes it before routing), backslashes, NUL
// get 400, and symlinks out of the root get 404 when the root is an
// os.Root-based fs.FS ((*os.Root).FS()).
//
// Slow clients: ReadHeaderTimeout, IdleTimeout and MaxHeaderBytes bound what a
// client that sends slowly (slowloris) can hold; each connection has its own
// goroutine, so it never blocks other clients. A client that stops reading a
// download is cut off by a write deadline sized from the file size.
package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"onramp/netboot"
)

// Config configures a Server.
type Config struct {
	// Addr to listen on, e.g. "10.77.0.1:8080".
	Addr string
	// OnLink, when set, is the cart network: the kernel drops SYNs from any
	// other source address (netboot.OnLinkListenConfig), so a machine on
	// another network that routes to Addr gets nothing, not even a SYN-ACK.
	OnLink *net.IPNet
	// Assets is served under /assets/ (talos/v1.14.1/amd64/vmlinuz ...).
	// Use (*os.Root).FS(): os.DirFS follows symlinks out of the directory.
	Assets fs.FS
	// BootFiles is served under /boot/: the iPXE binaries, usually the same
	// fs.FS as the TFTP root (tftp.BootFiles).
	BootFiles fs.FS
	// Booter decides what /ipxe tells each machine. nil = every machine is
	// told it is not approved.
	Booter netboot.Booter
	// Sink receives http.* and ipxe.script events. nil = discard.
	Sink netboot.Sink
	// Logger; nil = discard. The server adds component=httpboot.
	Logger *slog.Logger
	// RateLimit caps bytes/s per client IP for /assets/ and /boot/; 0 = off.
	RateLimit int64
	// ScriptBase is the base URL written into iPXE scripts, e.g.
	// "http://10.77.0.1:8080". "" = "http://" + the request's Host header.
	ScriptBase string
	// ConfigEndpoint switches /config/<token> on; nil = off (404).
	ConfigEndpoint *ConfigTokens

	// ReadHeaderTimeout (default 10s), IdleTimeout (default 60s),
	// ShutdownTimeout (default 5s): how long Run waits for running
	// downloads after ctx is cancelled before it cuts them off.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
}

// MaxHeaderBytes bounds a request's header block. Firmware sends a few
// hundred bytes.
const MaxHeaderBytes = 16 << 10

// Server runs the Handler on an HTTP listener.
type Server struct {
	cfg     Config
	h       *Handler
	srv     *http.Server
	baseCtx context.Context
	cancel  context.CancelFunc

	mu sync.Mutex
	ln net.Listener
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("create http boot server: no listen address")
	}
	h, err := NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, h: h}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	return s, nil
}

// Handler returns the server's http.Handler.
func (s *Server) Handler() *Handler { return s.h }

// Listen binds the TCP listener, so bind errors surface before Run and tests
// can learn the port. Run calls it if it was not called.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr(), nil
	}
	lc, err := netboot.OnLinkListenConfig(s.cfg.OnLink)
	if err != nil {
		return nil, fmt.Errorf("listen http on %s: %w", s.cfg.Addr, err)
	}
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen http on %s: %w", s.cfg.Addr, err)
	}

	s.ln = &sendfileListener{Listener: ln}
	return ln.Addr(), nil
}

// Run serves until ctx is cancelled. It then stops accepting, lets running
// requests finish for up to ShutdownTimeout, cuts off the rest, waits for
// every handler to return and returns nil.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	s.h.log.Info("serving http", "addr", ln.Addr().String())
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		if serr := s.srv.Shutdown(sctx); serr != nil {
			s.h.log.Warn("downloads still running at shutdown; cutting them off", "timeout", s.cfg.ShutdownTimeout)
		}
		cancel()
		s.cancel()
		s.srv.Close()
		err = <-served
	case err = <-served:
		s.cancel()
		s.srv.Close()
	}
	s.h.wait(5 * time.Second)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}
