package events

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"onramp/netboot"
)

func startKmsg(t *testing.T, cfg KmsgConfig) (*KmsgServer, string, string) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	k, err := NewKmsg(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ta, ua, err := k.Listen()
	if err != nil {
		t.Fatal(err)
	}
	runServer(t, k.Run)
	return k, ta.String(), ua.String()
}

func kmsgLine(seq int, msg string) string {
	return fmt.Sprintf(`{"clock":%d,"facility":"kern","msg":%q,"priority":"info","seq":%d,"talos-level":"info","talos-time":"2026-11-29T15:30:01Z"}`, seq*1000, msg, seq)
}

// TestKmsgTCPAndUDP sends Talos' lines over real TCP (newline-delimited,
// as its jsonLinesSender does) and UDP (one per datagram), mixed with
// garbage and an oversized line, and checks only the good ones arrive.
func TestKmsgTCPAndUDP(t *testing.T) {
	t.Parallel()
	col := newCollector()
	k, taddr, uaddr := startKmsg(t, KmsgConfig{OnLink: loopback, Resolver: labMACs, Sink: col, MaxLine: 1024})

	tc, err := net.Dial("tcp", taddr)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(kmsgLine(1, "Linux version 6.1.0-28-amd64") + "\n")
	b.WriteString("this is not json\n")
	b.WriteString(`{"msg":"` + strings.Repeat("A", 2000) + `"}` + "\n") // oversized: skipped to its newline
	b.WriteString(kmsgLine(2, "virtio_net virtio0 enp0s2: renamed") + "\n")
	b.WriteString("\n")
	b.WriteString(`{"facility":"kern"}` + "\n")
	b.WriteString(kmsgLine(3, "last line, no newline"))
	if _, err := tc.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	tc.Close()

	uc, err := net.Dial("udp", uaddr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	// UDP after TCP is done, so the order on the timeline is known.
	col.waitN(t, 3, 5*time.Second)
	for _, d := range []string{kmsgLine(4, "tpm_tis MSFT0101:00: 2.0 TPM") + "\n", "garbage", strings.Repeat("B", 1500), `{"msg":"` + strings.Repeat("é", 400) + `","priority":"err"}`} {
		if _, err := uc.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	got := col.waitN(t, 5, 5*time.Second)
	long := strings.Repeat("é", 256) // 512 bytes: truncated on a rune boundary
	mac, ip := "52:54:00:77:00:10", "127.0.0.1"
	want := []netboot.Event{
		{Kind: EventKmsg, MAC: mac, IP: ip, Detail: "Linux version 6.1.0-28-amd64", Attrs: map[string]string{"facility": "kern", "priority": "info", "seq": "1"}},
		{Kind: EventKmsg, MAC: mac, IP: ip, Detail: "virtio_net virtio0 enp0s2: renamed", Attrs: map[string]string{"facility": "kern", "priority": "info", "seq": "2"}},
		{Kind: EventKmsg, MAC: mac, IP: ip, Detail: "last line, no newline", Attrs: map[string]string{"facility": "kern", "priority": "info", "seq": "3"}},
		{Kind: EventKmsg, MAC: mac, IP: ip, Detail: "tpm_tis MSFT0101:00: 2.0 TPM", Attrs: map[string]string{"facility": "kern", "priority": "info", "seq": "4"}},
		{Kind: EventKmsg, MAC: mac, IP: ip, Detail: long, Attrs: map[string]string{"priority": "err"}},
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(netboot.Event{}, "Time")); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	var st Stats
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st = k.Stats(); st.Malformed+st.Oversized >= 5 {
			break
		}
	}
	if st.Accepted != 5 || st.Malformed != 3 || st.Oversized != 2 {
		t.Errorf("stats %+v, want 5 accepted, 3 malformed, 2 oversized", st)
	}
}

// TestKmsgRateAndConns: a chatty peer is cut to its burst; connections over
// the per-peer limit are refused; the server stays up for others.
func TestKmsgRateAndConns(t *testing.T) {
	t.Parallel()
	col := newCollector()
	k, taddr, _ := startKmsg(t, KmsgConfig{Sink: col, Rate: 0.001, Burst: 10, MaxConnsPerPeer: 2})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", taddr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// the third is closed by the server
	_ = conns[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); err == nil {
		t.Error("third connection from one peer stayed open")
	}
	var b bytes.Buffer
	for i := range 100 {
		b.WriteString(kmsgLine(i, "chatty") + "\n")
	}
	if _, err := conns[0].Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	col.waitN(t, 10, 5*time.Second)
	var st Stats
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && st.RateLimited < 90; time.Sleep(10 * time.Millisecond) {
		st = k.Stats()
	}
	if st.Accepted != 10 || st.RateLimited != 90 || st.Refused != 1 {
		t.Errorf("stats %+v, want 10 accepted, 90 rate-limited, 1 refused", st)
	}
}

// TestKmsgPeers sends lines with netcat and socat, peers we did not write,
// over TCP and UDP.
func TestKmsgPeers(t *testing.T) {
	t.Parallel()
	col := newCollector()
	_, taddr, uaddr := startKmsg(t, KmsgConfig{Resolver: labMACs, Sink: col})
	th, tp, _ := net.SplitHostPort(taddr)
	uh, up, _ := net.SplitHostPort(uaddr)
	type peer struct {
		name string
		args []string
		msg  string
	}
	var peers []peer
	if _, err := exec.LookPath("nc"); err == nil {
		peers = append(peers,
			peer{"nc tcp", []string{"nc", "-N", "-w", "2", th, tp}, "nc over tcp"},
			peer{"nc udp", []string{"nc", "-u", "-w", "1", uh, up}, "nc over udp"})
	}
	if _, err := exec.LookPath("socat"); err == nil {
		peers = append(peers,
			peer{"socat tcp", []string{"socat", "-u", "STDIN", "TCP:" + taddr}, "socat over tcp"},
			peer{"socat udp", []string{"socat", "-u", "STDIN", "UDP:" + uaddr}, "socat over udp"})
	}
	if len(peers) == 0 {
		t.Skip("neither nc (netcat-openbsd) nor socat is installed")
	}
	for i, p := range peers {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		cmd := exec.CommandContext(ctx, p.args[0], p.args[1:]...)
		cmd.Stdin = strings.NewReader(kmsgLine(i, p.msg) + "\nnot json\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			cancel()
			t.Fatalf("%s: %v\n%s", p.name, err, out)
		}
		cancel()
		got := col.waitN(t, i+1, 5*time.Second)
		if e := got[i]; e.Detail != p.msg || e.Kind != EventKmsg || e.MAC != "52:54:00:77:00:10" || e.Attrs["priority"] != "info" {
			t.Errorf("%s: got %+v", p.name, e)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(col.snapshot()); n != len(peers) {
		t.Errorf("%d events, want %d (garbage must not become events)", n, len(peers))
	}
}

// TestKmsgRunStops: Run returns promptly with connections still open, and
// a busy port is an error from Listen, not a panic.
func TestKmsgRunStops(t *testing.T) {
	t.Parallel()
	k, err := NewKmsg(KmsgConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ta, _, err := k.Listen()
	if err != nil {
		t.Fatal(err)
	}
	busy, _ := NewKmsg(KmsgConfig{Addr: ta.String()})
	if _, _, err := busy.Listen(); err == nil {
		t.Error("second Listen on a busy port succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	c, err := net.Dial("tcp", ta.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return with a connection open")
	}
}
