package events

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// peerLimiter is a token bucket per peer address: rate tokens a second, up to
// burst. The map is bounded; when full, idle peers are forgotten first.
type peerLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu sync.Mutex
	m  map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxPeers = 4096

func newPeerLimiter(rate, burst float64, now func() time.Time) *peerLimiter {
	return &peerLimiter{rate: rate, burst: burst, now: now, m: make(map[netip.Addr]*bucket)}
}

// allow takes one token from peer's bucket.
func (l *peerLimiter) allow(peer netip.Addr) bool {
	if l.rate <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[peer]
	if !ok {
		if len(l.m) >= maxPeers {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.m[peer] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict drops full buckets (peers idle long enough to have refilled), or
// everything if none is.
func (l *peerLimiter) evict(now time.Time) {
	for k, b := range l.m {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.m, k)
		}
	}
	if len(l.m) >= maxPeers {
		clear(l.m)
	}
}

// Stats counts what a receiver took in and turned away.
type Stats struct {
	Accepted    uint64 `json:"accepted"`    // became timeline events
	Malformed   uint64 `json:"malformed"`   // not JSON / not a Talos event
	Oversized   uint64 `json:"oversized"`   // longer than the line or message limit
	RateLimited uint64 `json:"rateLimited"` // over a peer's rate
	Refused     uint64 `json:"refused"`     // connections over the limit
}

// counters are Stats behind a mutex, with a rate-limited logger for the bad
// ones: at most one line per kind and interval, saying how many were
// suppressed since.
type counters struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	s       Stats
	lastLog map[string]time.Time
	quiet   map[string]uint64
}

func newCounters(log *slog.Logger, every time.Duration, now func() time.Time) *counters {
	return &counters{log: log, every: every, now: now, lastLog: map[string]time.Time{}, quiet: map[string]uint64{}}
}

func (c *counters) accepted() {
	c.mu.Lock()
	c.s.Accepted++
	c.mu.Unlock()
}

// reject counts one rejected item of kind ("malformed", "oversized",
// "rate-limited", "refused") and maybe logs it.
func (c *counters) reject(kind string, peer netip.Addr, err error) {
	now := c.now()
	c.mu.Lock()
	switch kind {
	case "malformed":
		c.s.Malformed++
	case "oversized":
		c.s.Oversized++
	case "rate-limited":
		c.s.RateLimited++
	case "refused":
		c.s.Refused++
	}
	if last, ok := c.lastLog[kind]; ok && now.Sub(last) < c.every {
		c.quiet[kind]++
		c.mu.Unlock()
		return
	}
	suppressed := c.quiet[kind]
	c.quiet[kind] = 0
	c.lastLog[kind] = now
	c.mu.Unlock()
	args := []any{"peer", peer.String(), "suppressed", suppressed}
	if err != nil {
		args = append(args, "err", err)
	}
	c.log.Warn("rejected "+kind, args...)
}

func (c *counters) stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}
