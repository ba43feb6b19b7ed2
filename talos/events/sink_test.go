package events

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/siderolabs/siderolink/api/events"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"onramp/netboot"
)

func startSink(t *testing.T, cfg SinkConfig) (*SinkServer, string) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	runServer(t, s.Run)
	return s, addr.String()
}

// dial is a Talos-like client: plain gRPC, siderolink's generated client.
func dial(t *testing.T, addr string) events.EventSinkServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return events.NewEventSinkServiceClient(conn)
}

// TestSinkOverGRPC publishes what a Talos install sends with siderolink's
// generated client over a real socket, and checks the timeline events.
func TestSinkOverGRPC(t *testing.T) {
	t.Parallel()
	col := newCollector()
	s, addr := startSink(t, SinkConfig{OnLink: loopback, Resolver: labMACs, Sink: col})
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sent := []*events.EventRequest{
		talosRequest(t, &machine.MachineStatusEvent{Stage: machine.MachineStatusEvent_MAINTENANCE, Status: &machine.MachineStatusEvent_MachineStatus{Ready: true}}),
		runtimeRequest(t, &machine.SequenceEvent{Sequence: "install", Action: machine.SequenceEvent_START}),
		talosRequest(t, &machine.PhaseEvent{Phase: "install", Action: machine.PhaseEvent_START}),
		talosRequest(t, &machine.MachineStatusEvent{Stage: machine.MachineStatusEvent_INSTALLING, Status: &machine.MachineStatusEvent_MachineStatus{}}),
		talosRequest(t, &machine.ConfigValidationErrorEvent{Error: "bad disk"}),
		{Id: "x", Data: &anypb.Any{TypeUrl: "talos/runtime/machine.Bogus", Value: []byte("junk")}}, // acknowledged, dropped
		talosRequest(t, &machine.ServiceStateEvent{Service: "etcd", Action: machine.ServiceStateEvent_RUNNING}),
	}
	for i, r := range sent {
		if _, err := c.Publish(ctx, r); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	got := col.waitN(t, 6, 5*time.Second)
	want := []netboot.Event{
		{Kind: EventTalos, MAC: "52:54:00:77:00:10", IP: "127.0.0.1", Detail: "stage: maintenance", Attrs: map[string]string{"type": "MachineStatusEvent", "stage": "maintenance", "ready": "true", "id": "d0000000000000000000"}},
		{Kind: EventTalos, MAC: "52:54:00:77:00:10", IP: "127.0.0.1", Detail: "sequence install: running", Attrs: map[string]string{"type": "SequenceEvent", "sequence": "install"}},
		{Kind: EventTalos, MAC: "52:54:00:77:00:10", IP: "127.0.0.1", Detail: "phase install: running", Attrs: map[string]string{"type": "PhaseEvent", "phase": "install", "id": "d0000000000000000000"}},
		{Kind: EventTalos, MAC: "52:54:00:77:00:10", IP: "127.0.0.1", Detail: "stage: installing", Attrs: map[string]string{"type": "MachineStatusEvent", "stage": "installing", "ready": "false", "id": "d0000000000000000000"}},
		{Kind: EventTalos, MAC: "52:54:00:77:00:10", IP: "127.0.0.1", Detail: "config validation error", Err: "config validation error: bad disk", Attrs: map[string]string{"type": "ConfigValidationErrorEvent", "id": "d0000000000000000000"}},
		{Kind: EventTalos, MAC: "52:54:00:77:00:10", IP: "127.0.0.1", Detail: "service etcd: running", Attrs: map[string]string{"type": "ServiceStateEvent", "service": "etcd", "state": "running", "id": "d0000000000000000000"}},
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(netboot.Event{}, "Time")); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	for _, e := range got {
		if e.Time.IsZero() {
			t.Errorf("event without time: %+v", e)
		}
	}
	if st := s.Stats(); st.Accepted != 6 || st.Malformed != 1 {
		t.Errorf("stats %+v, want 6 accepted, 1 malformed", st)
	}
}

// TestSinkBounds: a message over the size limit and a peer over its rate
// are refused with gRPC codes Talos retries on; the server keeps serving.
func TestSinkBounds(t *testing.T) {
	t.Parallel()
	col := newCollector()
	s, addr := startSink(t, SinkConfig{Sink: col, MaxMsgSize: 1024, Rate: 0.001, Burst: 3})
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	big := talosRequest(t, &machine.ConfigLoadErrorEvent{Error: strings.Repeat("x", 4096)})
	if _, err := c.Publish(ctx, big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized Publish: %v, want ResourceExhausted", err)
	}
	ok := talosRequest(t, &machine.PhaseEvent{Phase: "boot"})
	var codesSeen []codes.Code
	for range 5 {
		_, err := c.Publish(ctx, ok)
		codesSeen = append(codesSeen, status.Code(err))
	}
	want := []codes.Code{codes.OK, codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}
	if d := cmp.Diff(want, codesSeen); d != "" {
		t.Errorf("codes (-want +got):\n%s", d)
	}
	if st := s.Stats(); st.Accepted != 3 || st.RateLimited != 2 {
		t.Errorf("stats %+v, want 3 accepted, 2 rate-limited", st)
	}
	if n := len(col.snapshot()); n != 3 {
		t.Errorf("%d events emitted, want 3", n)
	}
}

// TestSinkMaxConns: connections beyond the limit are closed at once.
func TestSinkMaxConns(t *testing.T) {
	t.Parallel()
	s, addr := startSink(t, SinkConfig{MaxConns: 2})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Wait until the server accepted both, then the third is refused.
	time.Sleep(200 * time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 64)); err == nil {
		t.Error("third connection read data; want it closed")
	}
	if st := s.Stats(); st.Refused != 1 {
		t.Errorf("stats %+v, want 1 refused", st)
	}
	// One closes: a new one is served (gRPC answers).
	conns[0].Close()
	conns = conns[1:]
	time.Sleep(100 * time.Millisecond)
	cl := dial(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := cl.Publish(ctx, talosRequest(t, &machine.PhaseEvent{Phase: "boot"})); err != nil {
		t.Errorf("Publish after a slot freed: %v", err)
	}
}

// TestSinkOnLink: a peer outside the on-link network never gets in.
func TestSinkOnLink(t *testing.T) {
	t.Parallel()
	elsewhere := &net.IPNet{IP: net.IPv4(10, 99, 0, 0), Mask: net.CIDRMask(16, 32)}
	_, addr := startSink(t, SinkConfig{OnLink: elsewhere})
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	c, err := d.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Fatalf("connected from 127.0.0.1 to a sink for %s", elsewhere)
	}
}

// TestCloseWithoutRun: a receiver that listened but never ran gives its
// ports back on Close.
func TestCloseWithoutRun(t *testing.T) {
	t.Parallel()
	s, err := NewSink(SinkConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	sa, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKmsg(KmsgConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ka, _, err := k.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("sink Close: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Errorf("kmsg Close: %v", err)
	}
	for _, a := range []string{sa.String(), ka.String()} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("port %s not given back: %v", a, err)
			continue
		}
		l.Close()
	}
}
