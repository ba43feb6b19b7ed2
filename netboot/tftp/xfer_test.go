package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onramp/netboot"
)

// atftpGet fetches name with atftp (Debian package atftp), the one common
// client that speaks RFC 7440 windowsize, and returns the file's bytes.
func atftpGet(t *testing.T, ctx context.Context, port int, name string, opts ...string) ([]byte, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"--tftp-timeout", "1"}
	for i := 0; i+1 < len(opts); i += 2 {
		args = append(args, "--option", opts[i]+" "+opts[i+1])
	}
	args = append(args, "-g", "-r", name, "-l", out, "127.0.0.1", fmt.Sprint(port))
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "atftp", args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("atftp %v: %w: %s", args, err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("atftp %v: %w: %s", args, err, b)
	}
	return got, nil
}

func needAtftp(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("atftp"); err != nil {
		t.Skip("atftp not installed (Debian package atftp); CI installs it")
	}
}

// TestWindowsize downloads with atftp at several window and block sizes
// (RFC 7440, as OVMF and iPXE use it) and checks every byte.
func TestWindowsize(t *testing.T) { bothWays(t, testWindowsize) }

func testWindowsize(t *testing.T, smod func(*Server)) {
	needAtftp(t)
	fx := newFixture(t)
	r := startServer(t, fx.dir, nil, smod)
	tests := []struct {
		file            string
		blksize, window int
	}{
		{"ipxe.efi", 512, 1},
		{"ipxe.efi", 1468, 4},
		{"ipxe.efi", 1468, 64},
		{"ipxe.efi", 1024, 200}, // capped to 64
		{"exact.bin", 1468, 4},  // 4 full blocks, then an empty one in a new window
		{"exact.bin", 1468, 5},  // the empty block closes the first window
		{"boot/undionly.kpxe", 512, 16},
		{"empty", 1468, 8},
		{"big.img", 1468, 32},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d/%d", tt.file, tt.blksize, tt.window), func(t *testing.T) {
			t.Parallel()
			got, err := atftpGet(t, t.Context(), r.addr.Port, tt.file, "blksize", fmt.Sprint(tt.blksize), "windowsize", fmt.Sprint(tt.window), "tsize", "0")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, fx.files[tt.file]) {
				t.Fatalf("got %d bytes, want the %d bytes of %s", len(got), len(fx.files[tt.file]), tt.file)
			}
		})
	}
}

// lossyProxy relays UDP between one client and the server, dropping
// packets on a fixed pattern: every dropEvery-th datagram in each
// direction (counting from the first DATA/ACK, never the request), so
// both lost DATA and lost ACKs happen.
type lossyProxy struct {
	front, back *net.UDPConn
	server      *net.UDPAddr
	dropEvery   int64
	dropped     atomic.Int64
	wg          sync.WaitGroup
}

func newLossyProxy(t *testing.T, server *net.UDPAddr, dropEvery int64) *lossyProxy {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	front, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{front: front, back: back, server: server, dropEvery: dropEvery}
	var client atomic.Pointer[net.UDPAddr]
	var transfer atomic.Pointer[net.UDPAddr]
	p.wg.Add(2)
	go func() { // client -> server
		defer p.wg.Done()
		buf := make([]byte, 70000)
		var n int64
		for {
			m, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			client.Store(from)
			to := transfer.Load()
			if to == nil || binary.BigEndian.Uint16(buf) == opRRQ {
				to = server
			} else if n++; n%p.dropEvery == 0 {
				p.dropped.Add(1)
				continue
			}
			back.WriteToUDP(buf[:m], to)
		}
	}()
	go func() { // server -> client
		defer p.wg.Done()
		buf := make([]byte, 70000)
		var n int64
		for {
			m, from, err := back.ReadFromUDP(buf)
			if err != nil {
				return
			}
			transfer.Store(from)
			if n++; n%p.dropEvery == 0 {
				p.dropped.Add(1)
				continue
			}
			if c := client.Load(); c != nil {
				front.WriteToUDP(buf[:m], c)
			}
		}
	}()
	t.Cleanup(func() {
		front.Close()
		back.Close()
		p.wg.Wait()
	})
	return p
}

// TestLostPackets runs real clients through a proxy that drops one
// datagram in 23 each way: the server must resend on timeout, ignore
// duplicate ACKs, and deliver every byte.
func TestLostPackets(t *testing.T) { bothWays(t, testLostPackets) }

func testLostPackets(t *testing.T, smod func(*Server)) {
	fx := newFixture(t)
	r := startServer(t, fx.dir, func(c *Config) { c.Timeout = 150 * time.Millisecond; c.Retries = 8 }, smod)
	clients := []struct {
		name string
		bin  string
		get  func(t *testing.T, port int) ([]byte, error)
	}{
		{"curl", "curl", func(t *testing.T, port int) ([]byte, error) {
			var out, stderr bytes.Buffer
			// No options: curl would ask for its own timeout (a fifth of
			// --max-time), and the server honours it (RFC 2349), which
			// makes every loss cost seconds.
			cmd := exec.CommandContext(t.Context(), "curl", "-sS", "--max-time", "60", "--tftp-no-options", "-o", "-", fmt.Sprintf("tftp://127.0.0.1:%d/boot/undionly.kpxe", port))
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("%w: %s", err, stderr.String())
			}
			return out.Bytes(), nil
		}},
		{"tftp-hpa", "tftp", func(t *testing.T, port int) ([]byte, error) {
			out := filepath.Join(t.TempDir(), "out")
			cmd := exec.CommandContext(t.Context(), "tftp", "127.0.0.1", fmt.Sprint(port), "-m", "binary", "-c", "get", "boot/undionly.kpxe", out)
			if b, err := cmd.CombinedOutput(); err != nil || len(b) > 0 {
				return nil, fmt.Errorf("tftp-hpa: %v: %s", err, b)
			}
			return os.ReadFile(out)
		}},
		{"atftp window 8", "atftp", func(t *testing.T, port int) ([]byte, error) {
			return atftpGet(t, t.Context(), port, "ipxe.efi", "blksize", "1468", "windowsize", "8")
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath(c.bin); err != nil {
				t.Skipf("%s not installed; CI installs it", c.bin)
			}
			p := newLossyProxy(t, r.addr, 23)
			got, err := c.get(t, p.front.LocalAddr().(*net.UDPAddr).Port)
			if err != nil {
				t.Fatal(err)
			}
			want := fx.files["boot/undionly.kpxe"]
			if c.bin == "atftp" {
				want = fx.files["ipxe.efi"]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(want))
			}
			if p.dropped.Load() == 0 {
				t.Fatal("the proxy dropped nothing; the test tested nothing")
			}
			t.Logf("%s: %d datagrams dropped, file intact", c.name, p.dropped.Load())
		})
	}
}

// TestGivesUp checks that a client that stops acknowledging ends the
// transfer after Retries sends, with a tftp.error event that says so.
func TestGivesUp(t *testing.T) { bothWays(t, testGivesUp) }

func testGivesUp(t *testing.T, smod func(*Server)) {
	fx := newFixture(t)
	r := startServer(t, fx.dir, func(c *Config) { c.Timeout = 100 * time.Millisecond; c.Retries = 3 }, smod)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteToUDP(rawRequest(opRRQ, "ipxe.efi", "octet"), r.addr)
	got := 0
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		switch op := binary.BigEndian.Uint16(buf); {
		case op == opDATA && binary.BigEndian.Uint16(buf[2:]) == 1:
			got++
		case op == opERROR:
			if !strings.Contains(string(buf[4:n]), "timeout") {
				t.Errorf("error %q, want timeout", buf[4:n])
			}
		default:
			t.Errorf("unexpected packet %q", buf[:n])
		}
	}
	if got != 3 {
		t.Errorf("block 1 sent %d times, want Retries = 3", got)
	}
	waitEvent(t, r.rec, func(e netboot.Event) bool {
		return e.Kind == netboot.EventTFTPError && strings.Contains(e.Err, "stopped acknowledging")
	})
}

func waitEvent(t *testing.T, rec *netboot.Recorder, ok func(netboot.Event) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range rec.Events() {
			if ok(e) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no matching event in %+v", rec.Events())
}

// TestMalformed sends broken and unexpected packets to the server port and
// to a running transfer, and checks the answers, that the transfer is not
// disturbed, and that the server still serves a real client afterwards.
func TestMalformed(t *testing.T) { bothWays(t, testMalformed) }

func testMalformed(t *testing.T, smod func(*Server)) {
	fx := newFixture(t)
	r := startServer(t, fx.dir, nil, smod)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 70000)
	reply := func() (uint16, uint16, string, *net.UDPAddr, error) {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return 0, 0, "", nil, err
		}
		if n < 4 {
			return 0, 0, "", from, fmt.Errorf("short reply %q", buf[:n])
		}
		return binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(buf[2:]), strings.TrimRight(string(buf[4:n]), "\x00"), from, nil
	}
	for _, tt := range []struct {
		name     string
		pkt      []byte
		wantCode int // -1 = no reply
	}{
		{"one byte", []byte{0}, -1},
		{"opcode 0", []byte{0, 0, 'x', 0}, int(errIllegalOp)},
		{"opcode 99", []byte{0, 99}, int(errIllegalOp)},
		{"unterminated", []byte("\x00\x01ipxe.efi\x00octet"), int(errIllegalOp)},
		{"no mode", []byte("\x00\x01ipxe.efi\x00"), int(errIllegalOp)},
		{"stray ACK", []byte{0, 4, 0, 1}, -1},
		{"stray DATA", []byte{0, 3, 0, 1, 'x'}, -1},
		{"netascii", rawRequest(opRRQ, "ipxe.efi", "netascii"), int(errIllegalOp)},
		{"traversal", rawRequest(opRRQ, "../secret", "octet"), int(errAccess)},
		{"missing", rawRequest(opRRQ, "nope", "octet"), int(errNotFound)},
		{"write", rawRequest(opWRQ, "x", "octet"), int(errAccess)},
		{"huge", append(rawRequest(opRRQ, "ipxe.efi", "octet"), bytes.Repeat([]byte("a\x00"), 5000)...), int(errIllegalOp)},
	} {
		if _, err := c.WriteToUDP(tt.pkt, r.addr); err != nil {
			t.Fatal(err)
		}
		op, code, msg, _, err := reply()
		switch {
		case tt.wantCode < 0 && err == nil:
			t.Errorf("%s: got a reply (op %d code %d %q), want none", tt.name, op, code, msg)
		case tt.wantCode >= 0 && err != nil:
			t.Errorf("%s: no reply: %v", tt.name, err)
		case tt.wantCode >= 0 && (op != opERROR || int(code) != tt.wantCode):
			t.Errorf("%s: reply op %d code %d %q, want ERROR %d", tt.name, op, code, msg, tt.wantCode)
		}
	}

	// A transfer survives garbage, wrong ACKs and a foreign sender.
	c.WriteToUDP(rawRequest(opRRQ, "exact.bin", "octet", "blksize", "1468"), r.addr)
	op, _, _, tid, err := reply()
	if err != nil || op != opOACK {
		t.Fatalf("no OACK: op %d, %v", op, err)
	}
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var got []byte
	for blk := uint16(0); ; blk++ {
		other.WriteToUDP([]byte{0, 4, 0, 9}, tid)                             // another TID: dropped by the kernel
		c.WriteToUDP([]byte{0, 9, 'j', 'u', 'n', 'k'}, tid)                   // junk opcode: ignored
		c.WriteToUDP([]byte{0, 4}, tid)                                       // short ACK: ignored
		c.WriteToUDP(binary.BigEndian.AppendUint16([]byte{0, 4}, blk+7), tid) // ACK from the future: ignored
		c.WriteToUDP(binary.BigEndian.AppendUint16([]byte{0, 4}, blk), tid)
		op, n, _, from, err := reply()
		if err != nil {
			t.Fatalf("after ACK %d: %v", blk, err)
		}
		if op != opDATA || n != blk+1 || from.Port != tid.Port {
			t.Fatalf("after ACK %d: op %d block %d from %v, want DATA %d from %v", blk, op, n, from, blk+1, tid)
		}
		// reply() trimmed NULs from the message; take the data from buf.
		size := 1468
		if rest := len(fx.files["exact.bin"]) - len(got); rest < size {
			size = rest
		}
		got = append(got, buf[4:4+size]...)
		if size < 1468 {
			c.WriteToUDP(binary.BigEndian.AppendUint16([]byte{0, 4}, n), tid)
			break
		}
	}
	if !bytes.Equal(got, fx.files["exact.bin"]) {
		t.Fatalf("transfer amid garbage: got %d bytes, want %d", len(got), len(fx.files["exact.bin"]))
	}
	if other.SetReadDeadline(time.Now().Add(200*time.Millisecond)) == nil {
		if n, _, err := other.ReadFromUDP(buf); err == nil {
			t.Errorf("the foreign sender got %q", buf[:n])
		}
	}
	if _, err := exec.LookPath("curl"); err == nil {
		if got, err := curlGet(t, t.Context(), r, "ipxe.efi", 1468); err != nil || !bytes.Equal(got, fx.files["ipxe.efi"]) {
			t.Fatalf("curl after the garbage: %v (%d bytes)", err, len(got))
		}
	}
}

// TestPerClientCap fills one client's share of the slots with stalled
// transfers: its next request is refused, another client's is served.
func TestPerClientCap(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	r := start(t, fx.dir, func(c *Config) { c.MaxTransfers = 10; c.MaxPerClient = 2; c.Timeout = 2 * time.Second })
	ask := func(ip net.IP) (uint16, string) {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.WriteToUDP(rawRequest(opRRQ, "big.img", "octet"), r.addr)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2048)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no answer to %v: %v", ip, err)
		}
		return binary.BigEndian.Uint16(buf), string(buf[4:n])
	}
	a := net.IPv4(127, 0, 0, 1)
	for i := range 2 {
		if op, msg := ask(a); op != opDATA {
			t.Fatalf("request %d: op %d %q, want DATA", i, op, msg)
		}
	}
	if op, msg := ask(a); op != opERROR || !strings.Contains(msg, "busy") {
		t.Fatalf("third request from one client: op %d %q, want ERROR server busy", op, msg)
	}
	if op, msg := ask(net.IPv4(127, 0, 0, 2)); op != opDATA {
		t.Fatalf("another client: op %d %q, want DATA", op, msg)
	}
	waitEvent(t, r.rec, func(e netboot.Event) bool {
		return e.Kind == netboot.EventTFTPError && strings.Contains(e.Err, "this machine already has 2")
	})
}
