package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/siderolabs/siderolink/api/events"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"onramp/netboot"
)

// SinkConfig configures the Talos event sink.
type SinkConfig struct {
	Addr     string     // host:port to listen on, e.g. "10.77.0.1:4002"
	OnLink   *net.IPNet // only peers in this network get in (nil: anyone)
	Resolver Resolver   // source IP → MAC; nil: events carry only the IP
	Sink     netboot.Sink
	Logger   *slog.Logger
	// MaxConns bounds open connections (default 64); more are closed at once.
	MaxConns int
	// MaxMsgSize bounds one EventRequest (default 64 KiB; Talos' events are
	// a few hundred bytes).
	MaxMsgSize int
	// Rate and Burst bound events per second per peer (default 50, burst
	// 500: Talos replays its whole event backlog when it connects). Over
	// the rate Publish fails with ResourceExhausted, and Talos sends the
	// event again after its controller's backoff.
	Rate  float64
	Burst int
	Clock func() time.Time
}

// SinkServer is a siderolink EventSinkService that puts Talos events on
// machines' timelines.
type SinkServer struct {
	events.UnimplementedEventSinkServiceServer

	cfg SinkConfig
	log *slog.Logger
	lim *peerLimiter
	cnt *counters

	mu sync.Mutex
	l  net.Listener
}

// NewSink checks cfg and fills in defaults. It opens nothing.
func NewSink(cfg SinkConfig) (*SinkServer, error) {
	if cfg.Addr == "" {
		return nil, errors.New("event sink: no listen address")
	}
	if cfg.Sink == nil {
		cfg.Sink = netboot.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	if cfg.MaxMsgSize <= 0 {
		cfg.MaxMsgSize = 64 << 10
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 50
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 500
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger.With("component", "talos-events")
	return &SinkServer{
		cfg: cfg,
		log: log,
		lim: newPeerLimiter(cfg.Rate, float64(cfg.Burst), cfg.Clock),
		cnt: newCounters(log, 10*time.Second, cfg.Clock),
	}, nil
}

// Listen opens the TCP socket (Run calls it when not done before) and
// returns its address.
func (s *SinkServer) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l != nil {
		return s.l.Addr(), nil
	}
	lc, err := netboot.OnLinkListenConfig(s.cfg.OnLink)
	if err != nil {
		return nil, fmt.Errorf("event sink: %w", err)
	}
	l, err := lc.Listen(context.Background(), "tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("event sink: listen on %s: %w", s.cfg.Addr, err)
	}
	s.l = &limitListener{Listener: l, max: int64(s.cfg.MaxConns), refused: func(c net.Conn) {
		s.cnt.reject("refused", addrIP(c.RemoteAddr()), errors.New("too many connections"))
	}}
	return s.l.Addr(), nil
}

// Stats returns what the sink took in and turned away so far.
func (s *SinkServer) Stats() Stats { return s.cnt.stats() }

// Close closes the socket of a sink that Listened but will not Run (Run
// closes it itself).
func (s *SinkServer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l == nil {
		return nil
	}
	return s.l.Close()
}

// Run serves until ctx ends.
func (s *SinkServer) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(s.cfg.MaxMsgSize),
		grpc.MaxConcurrentStreams(16),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	events.RegisterEventSinkServiceServer(srv, s)
	s.log.Info("serving", "addr", l.Addr().String())
	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(l) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errCh:
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		srv.Stop()
		<-stopped
	}
	if err == nil {
		err = <-errCh
	}
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("event sink: %w", err)
	}
	return nil
}

// Publish implements events.EventSinkServiceServer.
func (s *SinkServer) Publish(ctx context.Context, req *events.EventRequest) (*events.EventResponse, error) {
	var ip netip.Addr
	if p, ok := peer.FromContext(ctx); ok {
		ip = addrIP(p.Addr)
	}
	if !s.lim.allow(ip) {
		s.cnt.reject("rate-limited", ip, nil)
		return nil, status.Error(codes.ResourceExhausted, "too many events from this node: slow down and send again")
	}
	rec, err := Decode(req)
	if err != nil {
		// Acknowledged all the same: Talos would send it again forever.
		s.cnt.reject("malformed", ip, err)
		return &events.EventResponse{}, nil
	}
	e := netboot.Event{Time: s.cfg.Clock(), Kind: EventTalos, Detail: rec.Detail, Err: rec.Err, Attrs: rec.Attrs}
	if id := req.GetId(); id != "" {
		e.Attrs["id"] = truncate(id, 64)
	}
	s.fill(&e, ip)
	s.cnt.accepted()
	s.cfg.Sink.Emit(e)
	return &events.EventResponse{}, nil
}

func (s *SinkServer) fill(e *netboot.Event, ip netip.Addr) {
	fillPeer(e, ip, s.cfg.Resolver)
}

// fillPeer sets the event's IP and, when the resolver knows it, its MAC.
func fillPeer(e *netboot.Event, ip netip.Addr, r Resolver) {
	if !ip.IsValid() {
		return
	}
	ip = ip.Unmap()
	e.IP = ip.String()
	if r != nil {
		if mac, ok := r.MACForIP(ip); ok {
			e.MAC = mac
		}
	}
}

// addrIP returns the IP of a TCP or UDP address.
func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// limitListener closes connections beyond max at once (instead of letting
// them queue, as x/net/netutil.LimitListener does).
type limitListener struct {
	net.Listener
	max     int64
	active  atomic.Int64
	refused func(net.Conn)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.max {
			l.active.Add(-1)
			if l.refused != nil {
				l.refused(c)
			}
			c.Close()
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.active.Add(-1) })
	return c.Conn.Close()
}

var _ io.Closer = (*countedConn)(nil)
