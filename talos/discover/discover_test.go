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
