package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"onramp/netboot"
)

// KmsgRecord is one kernel log record as Talos sends it (see the package
// comment for the JSON fields).
type KmsgRecord struct {
	Msg        string
	Facility   string // kern, user, ..., local7; "" when absent or unknown
	Priority   string // emerg, alert, crit, err, warning, notice, info, debug; "" when absent or unknown
	Seq        int64  // -1 when absent
	Clock      int64  // µs since boot, -1 when absent
	TalosLevel string
	TalosTime  time.Time
}

var (
	facilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
		"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}
	priorities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
)

// ErrNotKmsg is returned by ParseKmsg for a line that is not a Talos kernel
// log record.
var ErrNotKmsg = errors.New("not a Talos kernel log record")

// ParseKmsg parses one JSON line (a trailing newline is allowed). It wants a
// JSON object with a string "msg"; other fields are taken when well-formed.
func ParseKmsg(line []byte) (KmsgRecord, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return KmsgRecord{}, fmt.Errorf("parse kernel log line: %w: not a JSON object", ErrNotKmsg)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return KmsgRecord{}, fmt.Errorf("parse kernel log line: %w: %w", ErrNotKmsg, err)
	}
	r := KmsgRecord{Seq: -1, Clock: -1}
	m, ok := raw["msg"]
	if !ok || json.Unmarshal(m, &r.Msg) != nil {
		return KmsgRecord{}, fmt.Errorf("parse kernel log line: %w: no \"msg\" string", ErrNotKmsg)
	}
	str := func(k string) string {
		var s string
		if v, ok := raw[k]; ok && json.Unmarshal(v, &s) == nil {
			return s
		}
		return ""
	}
	num := func(k string) int64 {
		var n json.Number
		// a JSON number only (json.Number also takes a quoted one)
		if v, ok := raw[k]; ok && len(v) > 0 && v[0] != '"' && json.Unmarshal(v, &n) == nil {
			if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil && i >= 0 {
				return i
			}
		}
		return -1
	}
	if f := str("facility"); isOneOf(f, facilities) {
		r.Facility = f
	}
	if p := str("priority"); isOneOf(p, priorities) {
		r.Priority = p
	}
	r.Seq, r.Clock = num("seq"), num("clock")
	r.TalosLevel = truncate(str("talos-level"), 16)
	if t, err := time.Parse(time.RFC3339Nano, str("talos-time")); err == nil {
		r.TalosTime = t
	}
	return r, nil
}

func isOneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// maxKmsgDetail bounds the message text on the timeline.
const maxKmsgDetail = 512

// KmsgConfig configures the kernel log receiver.
type KmsgConfig struct {
	Addr     string     // host:port for both TCP and UDP, e.g. "10.77.0.1:4001"
	OnLink   *net.IPNet // only peers in this network get in (nil: anyone)
	Resolver Resolver
	Sink     netboot.Sink
	Logger   *slog.Logger
	// MaxConns bounds TCP connections in all (default 64) and per peer
	// (MaxConnsPerPeer, default 4).
	MaxConns        int
	MaxConnsPerPeer int
	// MaxLine bounds one line or datagram (default 16 KiB); longer ones are
	// dropped and counted.
	MaxLine int
	// Rate and Burst bound lines per second per peer (default 200, burst
	// 2000: Talos sends the whole kernel ring buffer when it connects).
	// Lines over the rate are dropped and counted.
	Rate  float64
	Burst int
	// IdleTimeout closes a TCP connection that sent nothing for this long
	// (default 15 min; Talos reconnects when it has something to send).
	IdleTimeout time.Duration
	Clock       func() time.Time
}

// KmsgServer receives Talos kernel logs over TCP and UDP.
type KmsgServer struct {
	cfg KmsgConfig
	log *slog.Logger
	lim *peerLimiter
	cnt *counters

	mu    sync.Mutex
	tcp   net.Listener
	udp   net.PacketConn
	conns map[net.Conn]struct{}
	per   map[netip.Addr]int
	done  bool // Run is closing: connections accepted now are closed at once
}

// NewKmsg checks cfg and fills in defaults. It opens nothing.
func NewKmsg(cfg KmsgConfig) (*KmsgServer, error) {
	if cfg.Addr == "" {
		return nil, errors.New("kernel log receiver: no listen address")
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
	if cfg.MaxConnsPerPeer <= 0 {
		cfg.MaxConnsPerPeer = 4
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 16 << 10
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 2000
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger.With("component", "talos-kmsg")
	return &KmsgServer{
		cfg:   cfg,
		log:   log,
		lim:   newPeerLimiter(cfg.Rate, float64(cfg.Burst), cfg.Clock),
		cnt:   newCounters(log, 10*time.Second, cfg.Clock),
		conns: map[net.Conn]struct{}{},
		per:   map[netip.Addr]int{},
	}, nil
}

// Stats returns what the receiver took in and turned away so far.
func (k *KmsgServer) Stats() Stats { return k.cnt.stats() }

// Close closes the sockets of a receiver that Listened but will not Run
// (Run closes them itself).
func (k *KmsgServer) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.tcp == nil {
		return nil
	}
	return errors.Join(k.tcp.Close(), k.udp.Close())
}

// Listen opens the TCP and UDP sockets (Run calls it when not done before)
// and returns their addresses.
func (k *KmsgServer) Listen() (tcp, udp net.Addr, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.tcp != nil {
		return k.tcp.Addr(), k.udp.LocalAddr(), nil
	}
	lc, err := netboot.OnLinkListenConfig(k.cfg.OnLink)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel log receiver: %w", err)
	}
	tl, err := lc.Listen(context.Background(), "tcp", k.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel log receiver: listen on tcp %s: %w", k.cfg.Addr, err)
	}
	addr := k.cfg.Addr
	if host, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		// same port for UDP as TCP got
		addr = net.JoinHostPort(host, strconv.Itoa(tl.Addr().(*net.TCPAddr).Port))
	}
	ul, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		tl.Close()
		return nil, nil, fmt.Errorf("kernel log receiver: listen on udp %s: %w", addr, err)
	}
	k.tcp, k.udp = tl, ul
	return tl.Addr(), ul.LocalAddr(), nil
}

// Run serves until ctx ends.
func (k *KmsgServer) Run(ctx context.Context) error {
	if _, _, err := k.Listen(); err != nil {
		return err
	}
	k.mu.Lock()
	tl, ul := k.tcp, k.udp
	k.mu.Unlock()
	k.log.Info("serving", "tcp", tl.Addr().String(), "udp", ul.LocalAddr().String())

	var wg sync.WaitGroup
	errCh := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errCh <- k.acceptLoop(tl, &wg) }()
	go func() { defer wg.Done(); errCh <- k.udpLoop(ul) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errCh:
	}
	tl.Close()
	ul.Close()
	k.mu.Lock()
	k.done = true
	for c := range k.conns {
		c.Close()
	}
	k.mu.Unlock()
	wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("kernel log receiver: %w", err)
	}
	return nil
}

func (k *KmsgServer) acceptLoop(l net.Listener, wg *sync.WaitGroup) error {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		ip := addrIP(c.RemoteAddr())
		k.mu.Lock()
		if k.done {
			k.mu.Unlock()
			c.Close()
			return net.ErrClosed
		}
		if len(k.conns) >= k.cfg.MaxConns || k.per[ip] >= k.cfg.MaxConnsPerPeer {
			k.mu.Unlock()
			k.cnt.reject("refused", ip, errors.New("too many connections"))
			c.Close()
			continue
		}
		k.conns[c] = struct{}{}
		k.per[ip]++
		k.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.serveConn(c, ip)
			c.Close()
			k.mu.Lock()
			delete(k.conns, c)
			if k.per[ip]--; k.per[ip] <= 0 {
				delete(k.per, ip)
			}
			k.mu.Unlock()
		}()
	}
}

// serveConn reads newline-delimited records until EOF, an error or the
// idle timeout. An overlong line is skipped up to its newline.
func (k *KmsgServer) serveConn(c net.Conn, ip netip.Addr) {
	br := bufio.NewReaderSize(c, k.cfg.MaxLine+1)
	skipping := false
	for {
		_ = c.SetReadDeadline(time.Now().Add(k.cfg.IdleTimeout))
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !skipping {
				k.cnt.reject("oversized", ip, fmt.Errorf("line longer than %d bytes", k.cfg.MaxLine))
			}
			skipping = true
			continue
		case err != nil:
			// EOF mid-line: a last record without its newline still counts
			if len(line) > 0 && !skipping && errors.Is(err, io.EOF) {
				k.handle(line, ip)
			}
			return
		}
		if skipping {
			skipping = false
			continue
		}
		k.handle(line, ip)
	}
}

func (k *KmsgServer) udpLoop(pc net.PacketConn) error {
	buf := make([]byte, k.cfg.MaxLine+1)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		ip := addrIP(from)
		if n > k.cfg.MaxLine {
			k.cnt.reject("oversized", ip, fmt.Errorf("datagram longer than %d bytes", k.cfg.MaxLine))
			continue
		}
		// Talos sends one record per datagram; tools like nc may batch
		// several lines into one.
		for line := range bytes.SplitSeq(buf[:n], []byte{'\n'}) {
			k.handle(line, ip)
		}
	}
}

// handle turns one line into an event.
func (k *KmsgServer) handle(line []byte, ip netip.Addr) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if !k.lim.allow(ip) {
		k.cnt.reject("rate-limited", ip, nil)
		return
	}
	r, err := ParseKmsg(line)
	if err != nil {
		k.cnt.reject("malformed", ip, err)
		return
	}
	e := netboot.Event{
		Time:   k.cfg.Clock(),
		Kind:   EventKmsg,
		Detail: truncate(strings.TrimRight(r.Msg, "\r\n"), maxKmsgDetail),
	}
	attrs := map[string]string{}
	if r.Priority != "" {
		attrs["priority"] = r.Priority
	}
	if r.Facility != "" {
		attrs["facility"] = r.Facility
	}
	if r.Seq >= 0 {
		attrs["seq"] = strconv.FormatInt(r.Seq, 10)
	}
	if len(attrs) > 0 {
		e.Attrs = attrs
	}
	fillPeer(&e, ip, k.cfg.Resolver)
	k.cnt.accepted()
	k.cfg.Sink.Emit(e)
}
