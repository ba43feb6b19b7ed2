package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"onramp/netboot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a served root with files of known content and symlinks that try
// to leave it.
type fixture struct {
	dir   string
	files map[string][]byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	if err := os.MkdirAll(filepath.Join(dir, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{dir: dir, files: map[string][]byte{}}
	for name, size := range map[string]int{"ipxe.efi": 1 << 20, "big.img": 32 << 20, "boot/undionly.kpxe": 70_000, "exact.bin": 1468 * 4, "empty": 0} {
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		fx.files[name] = b
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("SECRET OUTSIDE THE ROOT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"escape": "../secret", "abs": "/etc/passwd", "alias.efi": "ipxe.efi"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

type running struct {
	addr *net.UDPAddr
	rec  *netboot.Recorder
	srv  *Server
}

func start(t *testing.T, dir string, mod func(*Config)) *running {
	t.Helper()
	return startServer(t, dir, mod, nil)
}

// bothWays runs test as parallel subtests with a server whose transfers
// each get a thread ("thread", up to blockingMax at once) and one that
// serves every transfer on its loops ("loop").
func bothWays(t *testing.T, test func(t *testing.T, smod func(*Server))) {
	t.Parallel()
	t.Run("thread", func(t *testing.T) { t.Parallel(); test(t, nil) })
	t.Run("loop", func(t *testing.T) { t.Parallel(); test(t, func(s *Server) { s.blockingMax = 0 }) })
}

// startServer is start with smod to change the server before it runs.
func startServer(t *testing.T, dir string, mod func(*Config), smod func(*Server)) *running {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &netboot.Recorder{}
	cfg := Config{Addr: "127.0.0.1:0", Root: root.FS(), Sink: rec, MaxBlockSize: 1468, Timeout: time.Second, Retries: 3}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if smod != nil {
		smod(srv)
	}
	a, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return within 15s of cancel")
		}
		root.Close()
	})
	return &running{addr: a.(*net.UDPAddr), rec: rec, srv: srv}
}

func need(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s); CI installs it", bin, map[string]string{"curl": "curl", "tftp": "tftp-hpa"}[bin])
	}
	return p
}

func curlGet(t *testing.T, ctx context.Context, r *running, name string, blksize int) ([]byte, error) {
	t.Helper()
	args := []string{"-sS", "--max-time", "60", "-o", "-"}
	if blksize > 0 {
		args = append(args, "--tftp-blksize", fmt.Sprint(blksize))
	}
	args = append(args, fmt.Sprintf("tftp://127.0.0.1:%d/%s", r.addr.Port, name))
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "curl", args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), err
}

func TestCurlDownloads(t *testing.T) { bothWays(t, testCurlDownloads) }

func testCurlDownloads(t *testing.T, smod func(*Server)) {
	need(t, "curl")
	fx := newFixture(t)
	r := startServer(t, fx.dir, nil, smod)
	tests := []struct {
		req, file string
		blksize   int
	}{
		{"ipxe.efi", "ipxe.efi", 512},
		{"ipxe.efi", "ipxe.efi", 1468},
		{"ipxe.efi", "ipxe.efi", 8192}, // capped to 1468 by the server
		{"big.img", "big.img", 1468},
		{"big.img", "big.img", 512},
		{"boot/undionly.kpxe", "boot/undionly.kpxe", 0},
		{"exact.bin", "exact.bin", 1468}, // multiple of blksize: ends with an empty block
		{"alias.efi", "ipxe.efi", 1468},  // symlink inside the root
		{"%2Fboot%5Cundionly.kpxe", "boot/undionly.kpxe", 1468},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.req, tt.blksize), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			got, err := curlGet(t, t.Context(), r, tt.req, tt.blksize)
			if err != nil {
				t.Fatalf("curl: %v", err)
			}
			if !bytes.Equal(got, fx.files[tt.file]) {
				t.Fatalf("got %d bytes, want the %d bytes of %s", len(got), len(fx.files[tt.file]), tt.file)
			}
			t.Logf("%s blksize %d: %d bytes in %v (%.1f MB/s)", tt.req, tt.blksize, len(got), time.Since(start), float64(len(got))/time.Since(start).Seconds()/1e6)
		})
	}
}

func TestTFTPHPADownloads(t *testing.T) {
	t.Parallel()
	need(t, "tftp")
	fx := newFixture(t)
	r := start(t, fx.dir, nil)
	// tftp-hpa's client sends no options: blksize 512, no tsize.
	for _, name := range []string{"ipxe.efi", "big.img", "exact.bin", "empty"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			start := time.Now()
			cmd := exec.CommandContext(ctx, "tftp", "127.0.0.1", fmt.Sprint(r.addr.Port), "-m", "binary", "-c", "get", name, out)
			if b, err := cmd.CombinedOutput(); err != nil || len(b) > 0 {
				// tftp-hpa prints errors and exits 0 on some of them.
				t.Fatalf("tftp get: %v: %s", err, b)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, fx.files[name]) {
				t.Fatalf("got %d bytes, want %d", len(got), len(fx.files[name]))
			}
			t.Logf("tftp-hpa %s: %d bytes in %v", name, len(got), time.Since(start))
		})
	}
}

// TestTraversal asks for names outside the root in every spelling and
// checks that nothing is sent, whatever the client.
func TestTraversal(t *testing.T) {
	t.Parallel()
	need(t, "curl")
	fx := newFixture(t)
	r := start(t, fx.dir, nil)
	// curl percent-decodes tftp:// paths once before sending, so %25 sends a
	// literal '%'.
	for _, name := range []string{
		"../secret", "..%2fsecret", "%2e%2e/secret", "%252e%252e/secret", "%252e%252e%252fsecret",
		"%5C..%5Csecret", "boot/../../secret", "%2Fetc%2Fpasswd", "/etc/passwd", "escape", "abs",
		"boot", "nonexistent", "..", "%00ipxe.efi",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := curlGet(t, t.Context(), r, name, 1468)
			if err == nil {
				t.Fatalf("curl fetched %d bytes for %q, want an error", len(got), name)
			}
			if len(got) != 0 {
				t.Fatalf("curl got %d bytes for %q, want 0: %q", len(got), name, got[:min(len(got), 64)])
			}
		})
	}
	for _, e := range r.rec.Events() {
		if e.Kind != netboot.EventTFTPError {
			t.Errorf("unexpected event %+v", e)
		}
	}
}

func TestWriteRefused(t *testing.T) {
	t.Parallel()
	need(t, "curl")
	fx := newFixture(t)
	r := start(t, fx.dir, nil)
	up := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(up, []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "curl", "-sS", "--max-time", "20", "-T", up, fmt.Sprintf("tftp://127.0.0.1:%d/newfile", r.addr.Port))
	b, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("upload succeeded: %s", b)
	}
	// The refusal is an ERROR packet with code 2, access violation (RFC
	// 1350), which curl reports as exit 69, CURLE_TFTP_PERM.
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 69 {
		t.Errorf("curl -T: %v (%s), want exit 69 (TFTP access violation)", err, b)
	}
	if _, err := exec.LookPath("tftp"); err == nil {
		cmd := exec.CommandContext(t.Context(), "tftp", "127.0.0.1", fmt.Sprint(r.addr.Port), "-m", "binary", "-c", "put", up, "newfile")
		b, _ := cmd.CombinedOutput()
		if !strings.Contains(string(b), "access violation") {
			t.Errorf("tftp-hpa put said %q, want the refusal message", b)
		}
	}
	if _, err := os.Stat(filepath.Join(fx.dir, "newfile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file was created: %v", err)
	}
	evs := r.rec.Events()
	if len(evs) == 0 || evs[0].Kind != netboot.EventTFTPError || !strings.Contains(evs[0].Err, "read-only") {
		t.Errorf("events = %+v, want one tftp.error saying read-only", evs)
	}
}

// TestSizeProbe replays what OVMF does: RRQ with tsize=0, read the OACK,
// abort with ERROR "User aborted".
func TestSizeProbe(t *testing.T) { bothWays(t, testSizeProbe) }

func testSizeProbe(t *testing.T, smod func(*Server)) {
	fx := newFixture(t)
	r := startServer(t, fx.dir, nil, smod)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rrq := []byte{0, 1}
	for _, s := range []string{"/ipxe.efi", "octet", "tsize", "0", "blksize", "1468"} {
		rrq = append(rrq, s...)
		rrq = append(rrq, 0)
	}
	if _, err := c.WriteToUDP(rrq, r.addr); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no OACK: %v", err)
	}
	if op := binary.BigEndian.Uint16(buf); op != 6 {
		t.Fatalf("opcode %d, want OACK (6): %q", op, buf[:n])
	}
	opts := strings.Split(strings.TrimSuffix(string(buf[2:n]), "\x00"), "\x00")
	want := map[string]string{"tsize": fmt.Sprint(1 << 20), "blksize": "1468"}
	for i := 0; i+1 < len(opts); i += 2 {
		if want[opts[i]] != opts[i+1] {
			t.Errorf("OACK option %s=%s, want %q", opts[i], opts[i+1], want[opts[i]])
		}
		delete(want, opts[i])
	}
	if len(want) != 0 {
		t.Errorf("OACK %q lacks %v", opts, want)
	}
	abort := append([]byte{0, 5, 0, 8}, "User aborted\x00"...)
	if _, err := c.WriteToUDP(abort, from); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		evs := r.rec.Events()
		if len(evs) == 2 {
			if evs[0].Kind != netboot.EventTFTPStart || evs[1].Kind != netboot.EventTFTPDone || !strings.HasPrefix(evs[1].Detail, "size probe") || evs[1].Err != "" {
				t.Fatalf("events = %+v, want start then done as a size probe", evs)
			}
			if evs[1].IP != "127.0.0.1" || evs[1].File != "ipxe.efi" {
				t.Fatalf("event %+v lacks the client IP or file", evs[1])
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("events = %+v, want a size probe", r.rec.Events())
}

func TestEvents(t *testing.T) {
	t.Parallel()
	need(t, "curl")
	fx := newFixture(t)
	r := start(t, fx.dir, nil)
	if _, err := curlGet(t, t.Context(), r, "ipxe.efi", 1468); err != nil {
		t.Fatal(err)
	}
	var done *netboot.Event
	for _, e := range r.rec.Events() {
		if e.Kind == netboot.EventTFTPDone {
			done = &e
		}
	}
	if done == nil || done.Bytes != 1<<20 || done.Duration <= 0 || done.IP != "127.0.0.1" || done.File != "ipxe.efi" {
		t.Fatalf("tftp.done = %+v, want bytes, duration, IP and file", done)
	}
}

// TestShutdownAbortsStalledTransfer starts a transfer that is never
// acknowledged and checks that Run still returns promptly.
func TestShutdownAbortsStalledTransfer(t *testing.T) { bothWays(t, testShutdownAbortsStalledTransfer) }

func testShutdownAbortsStalledTransfer(t *testing.T, smod func(*Server)) {
	fx := newFixture(t)
	root, err := os.OpenRoot(fx.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	srv, err := New(Config{Addr: "127.0.0.1:0", Root: root.FS(), Timeout: time.Second, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	if smod != nil {
		smod(srv)
	}
	a, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteToUDP(append([]byte{0, 1}, "big.img\x00octet\x00"...), a.(*net.UDPAddr))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadFromUDP(make([]byte, 1024)); err != nil {
		t.Fatalf("no first block: %v", err)
	}
	began := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("Run took %v to return", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{Addr: "127.0.0.1:0"}, {Root: os.DirFS(".")}, {Addr: "x", Root: os.DirFS("."), MaxBlockSize: 100}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Root: os.DirFS(".")})
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxBlockSize() != 65536-32 && s.MaxBlockSize() != DefaultBlockSize {
		t.Errorf("MaxBlockSize on loopback = %d", s.MaxBlockSize())
	}
}

// TestThroughput logs loopback figures for the report: curl fetching the
// 1 MiB and 32 MiB files at blksize 512 and 1468, one at a time. It checks
// the bytes, not the speed.
func TestThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput figures skipped in -short")
	}
	need(t, "curl")
	fx := newFixture(t)
	r := start(t, fx.dir, nil)
	for _, bs := range []int{512, 1468} {
		for _, name := range []string{"ipxe.efi", "big.img"} {
			start := time.Now()
			got, err := curlGet(t, t.Context(), r, name, bs)
			if err != nil || !bytes.Equal(got, fx.files[name]) {
				t.Fatalf("%s: %v, %d bytes", name, err, len(got))
			}
			d := time.Since(start)
			t.Logf("onramp tftp %s blksize %d: %d B in %v (%.1f MB/s)", name, bs, len(got), d.Round(time.Millisecond), float64(len(got))/d.Seconds()/1e6)
		}
	}
}

// TestMaxTransfers holds every transfer slot with clients that never ACK
// and checks that one more request is turned away at once.
func TestMaxTransfers(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	r := start(t, fx.dir, func(c *Config) { c.MaxTransfers = 2; c.Timeout = 500 * time.Millisecond; c.Retries = 2 })
	read := func(c *net.UDPConn) (uint16, string) {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2048)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return binary.BigEndian.Uint16(buf), string(buf[4:n])
	}
	for i := range 3 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.WriteToUDP(append([]byte{0, 1}, "big.img\x00octet\x00"...), r.addr)
		op, msg := read(c)
		switch {
		case i < 2 && op != 3:
			t.Fatalf("request %d: opcode %d %q, want DATA", i, op, msg)
		case i == 2 && (op != 5 || !strings.Contains(msg, "busy")):
			t.Fatalf("request %d: opcode %d %q, want ERROR server busy", i, op, msg)
		}
	}
}

// TestThreadsThenLoop: with every thread slot taken (blockingMax 1, by a
// raw client that holds its transfer), the next download is served on a
// loop; both deliver every byte.
func TestThreadsThenLoop(t *testing.T) {
	t.Parallel()
	need(t, "curl")
	fx := newFixture(t)
	// A long timeout: the raw transfer waits, unacknowledged, while curl runs.
	r := startServer(t, fx.dir, func(c *Config) { c.Timeout = 10 * time.Second }, func(s *Server) { s.blockingMax = 1 })
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteToUDP(append([]byte{0, 1}, "exact.bin\x00octet\x00"...), r.addr)
	buf := make([]byte, 1024)
	readData := func(want uint16) ([]byte, *net.UDPAddr) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("waiting for block %d: %v", want, err)
			}
			if n >= 4 && buf[1] == 3 && uint16(buf[2])<<8|uint16(buf[3]) == want {
				return append([]byte(nil), buf[4:n]...), from
			}
			if n >= 2 && buf[1] == 5 {
				t.Fatalf("server error: %q", buf[4:n])
			}
		}
	}
	got, peer := readData(1) // on the one thread

	b, err := curlGet(t, t.Context(), r, "big.img", 1468)
	if err != nil {
		t.Fatalf("curl while the thread is taken: %v", err)
	}
	if !bytes.Equal(b, fx.files["big.img"]) {
		t.Errorf("curl got %d bytes, want the %d of big.img", len(b), len(fx.files["big.img"]))
	}
	if n := r.srv.onLoop.Load(); n != 1 {
		t.Errorf("%d transfers served on a loop, want 1 (curl's)", n)
	}

	for block := uint16(1); block < 100; block++ {
		c.WriteToUDP([]byte{0, 4, byte(block >> 8), byte(block)}, peer)
		d, from := readData(block + 1)
		if from.Port != peer.Port {
			t.Fatalf("block %d came from port %d, the transfer began on %d", block+1, from.Port, peer.Port)
		}
		got = append(got, d...)
		if len(d) < 512 {
			c.WriteToUDP([]byte{0, 4, byte((block + 1) >> 8), byte(block + 1)}, peer)
			break
		}
	}
	if !bytes.Equal(got, fx.files["exact.bin"]) {
		t.Errorf("threaded transfer delivered %d bytes, want the %d of exact.bin", len(got), len(fx.files["exact.bin"]))
	}
}
