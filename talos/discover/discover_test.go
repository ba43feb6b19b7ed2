package discover

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"onramp/netboot"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A lease leads to a probe; the node answers on the third try; the event
// carries what it said. A second lease for the same IP while probing does
// not start a second probe.
func TestDiscoverAfterLease(t *testing.T) {
	t.Parallel()
	var rec netboot.Recorder
	var tries atomic.Int32
	d := New(Config{
		Next: &rec, Every: 10 * time.Millisecond, Wait: 5 * time.Second,
		Look: func(_ context.Context, addr string) (map[string]string, error) {
			if addr != "10.77.0.100:50000" {
				t.Errorf("probed %s", addr)
			}
			if tries.Add(1) < 3 {
				return nil, errors.New("connection refused")
			}
			return map[string]string{"serial": "LAB-0001", "secureBoot": "on", "tpm": "present"}, nil
		},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	ack := netboot.Event{Kind: netboot.EventDHCPAck, MAC: "52:54:00:77:00:10", IP: "10.77.0.100"}
	d.Emit(ack)
	d.Emit(ack)
	deadline := time.Now().Add(5 * time.Second)
	var found *netboot.Event
	for found == nil && time.Now().Before(deadline) {
		for _, e := range rec.Events() {
			if e.Kind == EventMaintenance {
				found = &e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatal("no talos.maintenance event")
	}
	if found.MAC != ack.MAC || found.Attrs["serial"] != "LAB-0001" {
		t.Fatalf("event = %+v", found)
	}
	if n := tries.Load(); n != 3 {
		t.Fatalf("probed %d times, want 3 (one probe per IP at a time)", n)
	}
	if got := len(rec.Events()); got != 3 { // two acks passed through + discovery
		t.Fatalf("%d events, want 3", got)
	}
}

// A machine that never answers is given up after Wait, and Run returns
// promptly on cancel while probes are in flight.
func TestDiscoverGivesUp(t *testing.T) {
	t.Parallel()
	var rec netboot.Recorder
	d := New(Config{Next: &rec, Every: 5 * time.Millisecond, Wait: 50 * time.Millisecond,
		Look: func(context.Context, string) (map[string]string, error) { return nil, errors.New("refused") }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	d.Emit(netboot.Event{Kind: netboot.EventDHCPAck, MAC: "52:54:00:77:00:11", IP: "10.77.0.101"})
	time.Sleep(200 * time.Millisecond)
	d.mu.Lock()
	left := len(d.pending)
	d.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d probes still pending after Wait", left)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return")
	}
}

// Machines that never answer (BMCs, a switch, another OS) must not keep a
// Talos node that got its lease after them from being seen: a watched
// machine holds an attempt slot only while its attempt runs. And no more
// than MaxWatched machines are watched at once.
func TestDiscoverNoHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	var rec netboot.Recorder
	var inFlight, most atomic.Int32
	d := New(Config{
		Next: &rec, Every: 20 * time.Millisecond, Wait: time.Minute, MaxConcurrent: 2, MaxWatched: 6,
		Look: func(ctx context.Context, addr string) (map[string]string, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			if addr == "10.77.0.200:50000" {
				return map[string]string{"serial": "TALOS-1"}, nil
			}
			return nil, errors.New("connection refused")
		},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for k := range 5 {
		d.Emit(netboot.Event{Kind: netboot.EventDHCPAck, MAC: "52:54:00:00:00:0" + string(rune('1'+k)), IP: "10.77.0.1" + string(rune('0'+k))})
	}
	d.Emit(netboot.Event{Kind: netboot.EventDHCPAck, MAC: "52:54:00:00:00:20", IP: "10.77.0.200"})
	d.Emit(netboot.Event{Kind: netboot.EventDHCPAck, MAC: "52:54:00:00:00:21", IP: "10.77.0.201"}) // the seventh: not watched
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		found := false
		for _, e := range rec.Events() {
			found = found || (e.Kind == EventMaintenance && e.Attrs["serial"] == "TALOS-1")
		}
		if found {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(start); took >= 5*time.Second {
		t.Fatal("the Talos node behind five silent machines was not seen within 5 s")
	}
	if n := d.Watching(); n != 5 {
		t.Errorf("watching %d machines, want the 5 silent ones", n)
	}
	if m := most.Load(); m > 2 {
		t.Errorf("%d attempts at once, MaxConcurrent is 2", m)
	}
}
