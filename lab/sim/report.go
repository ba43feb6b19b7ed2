package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
)

// What the node reports back, as Talos does:
//
//   - Events: Talos keeps every runtime event in memory from boot on; its
//     EventsSinkController, once an endpoint is known (talos.events.sink=, or
//     the applied config's EventSinkConfig, which wins), publishes the whole
//     backlog and then each new event, in order, resending after a failure.
//     eventQueue does the same with a bounded backlog.
//   - Kernel log: its KmsgLogDeliveryController, once destinations are known
//     (talos.logging.kernel= plus the config's KmsgLogConfig URLs), reads
//     /dev/kmsg from the start and sends each record as one JSON line (TCP)
//     or datagram (UDP) to every destination. kmsgForwarder does the same.

// maxBacklog bounds the events kept for a sink that is not there yet.
const maxBacklog = 1000

// eventQueue holds events until a publisher takes them, in order.
type eventQueue struct {
	log *slog.Logger

	mu      sync.Mutex
	items   []proto.Message
	dropped int
	pub     EventPublisher
	addr    string      // the address pub was dialled for ("" for a fixed publisher)
	owned   []io.Closer // sinks dialled here, closed when run ends
	wake    chan struct{}
}

func newEventQueue(log *slog.Logger) *eventQueue {
	return &eventQueue{log: log, wake: make(chan struct{}, 1)}
}

func (q *eventQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// add queues ev; it never blocks.
func (q *eventQueue) add(ev proto.Message) {
	q.mu.Lock()
	if len(q.items) >= maxBacklog {
		q.items = q.items[1:]
		q.dropped++
	}
	q.items = append(q.items, ev)
	q.mu.Unlock()
	q.poke()
}

// setPublisher makes p the destination from now on.
func (q *eventQueue) setPublisher(p EventPublisher) {
	q.mu.Lock()
	q.pub = p
	q.mu.Unlock()
	q.poke()
}

// useSink dials a siderolink sink at addr unless that is the current one.
func (q *eventQueue) useSink(addr string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if addr == "" || addr == q.addr {
		return nil
	}
	sink, err := NewSiderolinkSink(addr, nil)
	if err != nil {
		return err
	}
	q.pub, q.addr = sink, addr
	q.owned = append(q.owned, sink)
	q.log.Info("event sink", "endpoint", addr)
	q.poke()
	return nil
}

// pending returns how many events wait.
func (q *eventQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// run publishes queued events in order until ctx ends; a failed one is sent
// again after a backoff (1 s doubling to 10 s) or when the sink changes.
func (q *eventQueue) run(ctx context.Context) {
	defer func() {
		q.mu.Lock()
		for _, c := range q.owned {
			c.Close() //nolint:errcheck
		}
		q.owned = nil
		q.mu.Unlock()
	}()
	backoff := time.Second
	for {
		q.mu.Lock()
		pub := q.pub
		var ev proto.Message
		if len(q.items) > 0 {
			ev = q.items[0]
		}
		q.mu.Unlock()
		if pub == nil || ev == nil {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
				continue
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pub.Publish(pctx, ev)
		cancel()
		if err == nil {
			q.mu.Lock()
			if len(q.items) > 0 && q.items[0] == ev {
				q.items = q.items[1:]
			}
			q.mu.Unlock()
			backoff = time.Second
			continue
		}
		if ctx.Err() != nil {
			return
		}
		q.log.Debug("publish event", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-time.After(backoff):
			backoff = min(2*backoff, 10*time.Second)
		}
	}
}

// KmsgLine is one kernel log record, as read from /dev/kmsg.
type KmsgLine struct {
	Facility int // syslog facility (0 = kern)
	Priority int // 0 emerg … 7 debug
	Seq      int64
	Clock    int64 // µs since boot
	Msg      string
	Time     time.Time
}

// KmsgSource starts reading kernel log records; the channel closes when
// the source ends or ctx does.
type KmsgSource func(ctx context.Context) (<-chan KmsgLine, error)

var (
	kmsgFacilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
		"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}
	kmsgPriorities = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
)

// TalosJSON encodes l exactly as Talos' KmsgLogDeliveryController does
// (fields of go-kmsg's Message, the zap level of the priority, RFC 3339 time).
func (l KmsgLine) TalosJSON() []byte {
	level := "error"
	switch {
	case l.Priority == 7:
		level = "debug"
	case l.Priority == 5 || l.Priority == 6:
		level = "info"
	case l.Priority == 4:
		level = "warn"
	}
	fac, pri := "kern", "info"
	if l.Facility >= 0 && l.Facility < len(kmsgFacilities) {
		fac = kmsgFacilities[l.Facility]
	}
	if l.Priority >= 0 && l.Priority < len(kmsgPriorities) {
		pri = kmsgPriorities[l.Priority]
	}
	b, _ := json.Marshal(map[string]any{
		"clock":       l.Clock,
		"facility":    fac,
		"msg":         l.Msg,
		"priority":    pri,
		"seq":         l.Seq,
		"talos-level": level,
		"talos-time":  l.Time.Format(time.RFC3339Nano),
	})
	return b
}

// ParseDevKmsg parses one /dev/kmsg record, "PRI,SEQ,CLOCK,FLAGS;MESSAGE"
// followed by optional continuation lines (Documentation/ABI/testing/dev-kmsg).
func ParseDevKmsg(rec []byte, boot time.Time) (KmsgLine, error) {
	first, _, _ := bytes.Cut(rec, []byte{'\n'})
	prefix, msg, ok := bytes.Cut(first, []byte{';'})
	if !ok {
		return KmsgLine{}, errors.New("parse kernel record: no ';'")
	}
	f := strings.Split(string(prefix), ",")
	if len(f) < 3 {
		return KmsgLine{}, fmt.Errorf("parse kernel record: %d prefix fields, want at least 3", len(f))
	}
	var n [3]int64
	for i := range n {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return KmsgLine{}, fmt.Errorf("parse kernel record: %w", err)
		}
		n[i] = v
	}
	return KmsgLine{
		Priority: int(n[0] & 7),
		Facility: int(n[0] >> 3),
		Seq:      n[1],
		Clock:    n[2],
		Msg:      string(msg),
		Time:     boot.Add(time.Duration(n[2]) * time.Microsecond),
	}, nil
}

// DevKmsg reads the kernel log from path (/dev/kmsg) from its first record
// on, then follows it.
func DevKmsg(path string) KmsgSource {
	return func(ctx context.Context) (<-chan KmsgLine, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open kernel log: %w", err)
		}
		boot := time.Now().Add(-uptime())
		ch := make(chan KmsgLine, 256)
		stop := context.AfterFunc(ctx, func() { f.Close() }) //nolint:errcheck // unblocks Read
		go func() {
			defer close(ch)
			defer stop()
			defer f.Close() //nolint:errcheck
			buf := make([]byte, 8192)
			for {
				n, err := f.Read(buf)
				if errors.Is(err, syscall.EPIPE) { // records overwritten before we read them
					continue
				}
				if err != nil {
					return
				}
				l, err := ParseDevKmsg(buf[:n], boot)
				if err != nil {
					continue
				}
				select {
				case ch <- l:
				case <-ctx.Done():
					return
				}
			}
		}()
		return ch, nil
	}
}

// uptime is the time since boot (/proc/uptime), 0 if unknown.
func uptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// consoleKmsg turns the simulator's console lines into kernel log records,
// for running where /dev/kmsg is not ours to read (tests, a container).
type consoleKmsg struct {
	start time.Time
	now   func() time.Time

	mu      sync.Mutex
	partial []byte
	seq     int64
	ch      chan KmsgLine
}

func newConsoleKmsg(now func() time.Time) *consoleKmsg {
	return &consoleKmsg{start: now(), now: now, ch: make(chan KmsgLine, 1024)}
}

// Write implements io.Writer; it never blocks (a full buffer drops lines).
func (c *consoleKmsg) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		line, rest, ok := bytes.Cut(c.partial, []byte{'\n'})
		if !ok {
			break
		}
		now := c.now()
		l := KmsgLine{Facility: 0, Priority: 6, Seq: c.seq, Clock: now.Sub(c.start).Microseconds(), Msg: string(line), Time: now}
		c.seq++
		c.partial = append(c.partial[:0], rest...)
		select {
		case c.ch <- l:
		default:
		}
	}
	if len(c.partial) > 16<<10 {
		c.partial = c.partial[:0]
	}
	return len(p), nil
}

func (c *consoleKmsg) source(context.Context) (<-chan KmsgLine, error) { return c.ch, nil }

// kmsgForwarder sends kernel log records to every destination URL.
type kmsgForwarder struct {
	log *slog.Logger
	src KmsgSource

	mu      sync.Mutex
	cmdline []string
	config  []string
	wake    chan struct{}
}

func newKmsgForwarder(log *slog.Logger, src KmsgSource, cmdline []string) *kmsgForwarder {
	return &kmsgForwarder{log: log, src: src, cmdline: cmdline, wake: make(chan struct{}, 1)}
}

// setConfig sets the URLs from the applied config's KmsgLogConfig documents.
func (f *kmsgForwarder) setConfig(urls []string) {
	f.mu.Lock()
	f.config = urls
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// dests are the command line's and the config's URLs, each once.
func (f *kmsgForwarder) dests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, u := range append(slices.Clone(f.cmdline), f.config...) {
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// run waits for a destination, then forwards records until ctx ends.
func (f *kmsgForwarder) run(ctx context.Context) {
	for len(f.dests()) == 0 {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
	}
	ch, err := f.src(ctx)
	if err != nil {
		f.log.Warn("kernel log", "err", err)
		return
	}
	senders := map[string]*lineSender{}
	defer func() {
		for _, s := range senders {
			s.close()
		}
	}()
	for {
		var l KmsgLine
		var ok bool
		select {
		case <-ctx.Done():
			return
		case l, ok = <-ch:
			if !ok {
				return
			}
		}
		line := l.TalosJSON()
		// Talos retries a record until one destination took it; bounded
		// here, so a dead receiver costs a few seconds, not the log.
		for attempt := 0; attempt < 5; attempt++ {
			dests := f.dests()
			sent := false
			for _, d := range dests {
				s := senders[d]
				if s == nil {
					if s, err = newLineSender(d); err != nil {
						f.log.Warn("kernel log destination", "url", d, "err", err)
						continue
					}
					senders[d] = s
				}
				if err := s.send(ctx, line); err == nil {
					sent = true
				}
			}
			if sent {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// lineSender is Talos' jsonLinesSender: one connection, newline after each
// record on TCP, one datagram per record on UDP, reconnect after an error.
type lineSender struct {
	network, host string
	conn          net.Conn
}

func newLineSender(raw string) (*lineSender, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", raw, err)
	}
	if u.Scheme != "tcp" && u.Scheme != "udp" {
		return nil, fmt.Errorf("%q: scheme %q is not tcp or udp", raw, u.Scheme)
	}
	return &lineSender{network: u.Scheme, host: u.Host}, nil
}

func (s *lineSender) send(ctx context.Context, b []byte) error {
	if s.network == "tcp" {
		b = append(b, '\n')
	}
	if s.conn == nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := new(net.Dialer).DialContext(dctx, s.network, s.host)
		cancel()
		if err != nil {
			return err
		}
		s.conn = c
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.conn.Write(b); err != nil {
		s.close()
		return err
	}
	return nil
}

func (s *lineSender) close() {
	if s.conn != nil {
		s.conn.Close() //nolint:errcheck
		s.conn = nil
	}
}
