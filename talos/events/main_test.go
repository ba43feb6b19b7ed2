package events

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"onramp/netboot"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is a netboot.Sink that records events and wakes waiters.
type collector struct {
	mu     sync.Mutex
	events []netboot.Event
	ch     chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) Emit(e netboot.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *collector) snapshot() []netboot.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]netboot.Event(nil), c.events...)
}

// waitN waits until n events arrived or d passed, and returns them.
func (c *collector) waitN(t *testing.T, n int, d time.Duration) []netboot.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		if ev := c.snapshot(); len(ev) >= n {
			return ev
		}
		select {
		case <-c.ch:
		case <-deadline:
			ev := c.snapshot()
			t.Fatalf("got %d events within %s, want %d: %+v", len(ev), d, n, ev)
			return ev
		}
	}
}

// labMACs resolves 127.0.0.1 as a lab machine would be by its lease.
var labMACs = ResolverFunc(func(ip netip.Addr) (string, bool) {
	if ip == netip.MustParseAddr("127.0.0.1") {
		return "52:54:00:77:00:10", true
	}
	return "", false
})

// runServer runs srv until the test ends and checks it returns nil.
func runServer(t *testing.T, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10 s of cancel")
		}
	})
}

var loopback = &net.IPNet{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}
