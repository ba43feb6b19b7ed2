package sim_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/types/meta"
	"github.com/siderolabs/talos/pkg/machinery/config/types/runtime"

	"onramp/lab/sim"
	"onramp/lab/sim/simtest"
	"onramp/netboot"
	"onramp/talos/events"
)

// withReporting adds an EventSinkConfig and a KmsgLogConfig document to a
// machine config, as Onramp's generator does when the site sets them.
func withReporting(t *testing.T, cfg []byte, sink, kmsg string) []byte {
	t.Helper()
	c, err := configloader.NewFromBytes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	es := runtime.NewEventSinkV1Alpha1()
	es.Endpoint = sink
	u, err := url.Parse(kmsg)
	if err != nil {
		t.Fatal(err)
	}
	kl := runtime.NewKmsgLogV1Alpha1()
	kl.MetaName = "onramp"
	kl.KmsgLogURL = meta.URL{URL: u}
	out, err := container.New(append(c.Documents(), es, kl)...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := out.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder is a netboot.Sink for the receivers.
type recorder struct {
	mu sync.Mutex
	ev []netboot.Event
}

func (r *recorder) Emit(e netboot.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []netboot.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ev)
}

// TestReportsToOnrampReceivers: a node booted with no sink on its command
// line keeps its events; once a config with EventSinkConfig and
// KmsgLogConfig is applied (here over talos.config=), it sends Onramp's own
// receivers (talos/events) its whole backlog, the install sequence, the
// services after boot and bootstrap-less etcd, and its kernel log lines in
// Talos' JSON format — all decoded on the other side.
func TestReportsToOnrampReceivers(t *testing.T) {
	t.Parallel()

	rec := &recorder{}
	sinkSrv, err := events.NewSink(events.SinkConfig{Addr: "127.0.0.1:0", Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	sinkAddr, err := sinkSrv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	kmsgSrv, err := events.NewKmsg(events.KmsgConfig{Addr: "127.0.0.1:0", Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	kmsgTCP, _, err := kmsgSrv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{sinkSrv.Run, kmsgSrv.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("receiver: %v", err)
			}
		}()
	}
	// the simulator (registered later) stops first, then the receivers
	t.Cleanup(func() { cancel(); wg.Wait() })

	tpm := openTPM(t)
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)
	cfgBytes := withReporting(t, site.ControlPlane, sinkAddr.String(), "tcp://"+kmsgTCP.String())
	cfgSrv := newConfigServer(t, cfgBytes)

	cfg := simtest.Config(t, t.TempDir(), sim.Firmware{UEFI: true, SecureBoot: true}, tpm)
	cfg.ConfigURL = cfgSrv
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	simtest.Start(t, s)
	simtest.WaitStage(t, s, sim.StageRunning, 30*time.Second)

	want := []string{
		"MachineStatusEvent stage: booting",
		"MachineStatusEvent stage: maintenance",
		"MachineStatusEvent stage: installing",
		"SequenceEvent sequence install: running",
		"PhaseEvent phase install: running",
		"TaskEvent task install: running",
		"TaskEvent task install: done",
		"PhaseEvent phase install: done",
		"SequenceEvent sequence install: done",
		"MachineStatusEvent stage: rebooting",
		"MachineStatusEvent stage: booting",
		"MachineStatusEvent stage: running",
		"ServiceStateEvent service apid: running (Health check successful)",
		"ServiceStateEvent service trustd: running (Health check successful)",
		"ServiceStateEvent service etcd: preparing (Waiting for etcd to be bootstrapped)",
		"ServiceStateEvent service kubelet: running (Waiting for the API server)",
	}
	var got []string
	var kmsg []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got, kmsg = nil, nil
		for _, e := range rec.snapshot() {
			switch e.Kind {
			case events.EventTalos:
				got = append(got, e.Attrs["type"]+" "+e.Detail)
			case events.EventKmsg:
				kmsg = append(kmsg, e.Attrs["facility"]+"."+e.Attrs["priority"]+" "+e.Detail)
			}
		}
		if len(got) >= len(want) && slices.ContainsFunc(kmsg, func(l string) bool { return strings.Contains(l, "install finished") }) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events at Onramp's sink:\n got %q\nwant %q", got, want)
	}
	// the console lines stand in for the kernel log outside a guest
	for _, w := range []string{"kern.info [talos] maintenance mode: certificate fingerprint", "kern.info ONRAMP-LAB: state=installing", "kern.info [talos] install finished, rebooting"} {
		if !slices.ContainsFunc(kmsg, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("kernel log at Onramp lacks %q; got %q", w, kmsg)
		}
	}
	if st := kmsgSrv.Stats(); st.Malformed != 0 || st.Oversized != 0 {
		t.Errorf("kernel log receiver rejected lines: %+v", st)
	}
	if n := s.PendingEvents(); n != 0 {
		t.Errorf("%d events still pending", n)
	}
}

// TestEventsWaitForSink: events published while the sink is down are kept
// and delivered in order once it comes up (Talos resends after failures).
func TestEventsWaitForSink(t *testing.T) {
	t.Parallel()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens yet

	cfg := simtest.Config(t, t.TempDir(), sim.Firmware{UEFI: true}, nil)
	cfg.EventsSink = addr
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	simtest.Start(t, s)
	simtest.WaitStage(t, s, sim.StageMaintenance, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := s.PendingEvents(); n != 2 {
		t.Fatalf("%d events pending with the sink down, want 2 (booting, maintenance)", n)
	}

	rec := &recorder{}
	srv, err := events.NewSink(events.SinkConfig{Addr: addr, Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sink: %v", err)
		}
	})
	var got []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(got) < 2; time.Sleep(50 * time.Millisecond) {
		got = nil
		for _, e := range rec.snapshot() {
			got = append(got, e.Attrs["stage"])
		}
	}
	if !slices.Equal(got, []string{"booting", "maintenance"}) {
		t.Errorf("stages delivered late: %q", got)
	}
}

// newConfigServer serves cfg over HTTP (talos.config=) until the test ends.
func newConfigServer(t *testing.T, cfg []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(cfg) })) //nolint:errcheck
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDevKmsgToTalosJSON: a /dev/kmsg record becomes the JSON line Talos
// sends, which Onramp's receiver parses back to the same facts.
func TestDevKmsgToTalosJSON(t *testing.T) {
	t.Parallel()
	boot := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		rec                string
		fac, pri, msg, lvl string
		seq, clock         int64
		bad                bool
	}{
		{rec: "6,339,5140900,-;NET: Registered PF_INET6 protocol family\n SUBSYSTEM=net\n", fac: "kern", pri: "info", lvl: "info", msg: "NET: Registered PF_INET6 protocol family", seq: 339, clock: 5140900},
		{rec: "3,12,1000,c;tpm tpm0: A TPM error (256) occurred", fac: "kern", pri: "err", lvl: "error", msg: "tpm tpm0: A TPM error (256) occurred", seq: 12, clock: 1000},
		{rec: "30,1,2,-;systemd-udevd: starting", fac: "daemon", pri: "info", lvl: "info", msg: "systemd-udevd: starting", seq: 1, clock: 2},
		{rec: "12,7,9;warn without flags", fac: "user", pri: "warning", lvl: "warn", msg: "warn without flags", seq: 7, clock: 9},
		{rec: "no prefix here", bad: true},
		{rec: "6,x,1,-;bad seq", bad: true},
		{rec: "6,1;too few", bad: true},
	}
	for _, tt := range tests {
		l, err := sim.ParseDevKmsg([]byte(tt.rec), boot)
		if (err != nil) != tt.bad {
			t.Fatalf("ParseDevKmsg(%q): %v, want error %v", tt.rec, err, tt.bad)
		}
		if tt.bad {
			continue
		}
		r, err := events.ParseKmsg(l.TalosJSON())
		if err != nil {
			t.Fatalf("Onramp cannot parse %s: %v", l.TalosJSON(), err)
		}
		wantTime := boot.Add(time.Duration(tt.clock) * time.Microsecond)
		if r.Msg != tt.msg || r.Facility != tt.fac || r.Priority != tt.pri || r.Seq != tt.seq || r.Clock != tt.clock || r.TalosLevel != tt.lvl || !r.TalosTime.Equal(wantTime) {
			t.Errorf("%q → %s → %+v", tt.rec, l.TalosJSON(), r)
		}
	}
}
