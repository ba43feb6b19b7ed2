package httpboot

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Large files go through the poll(2) sendfile loop: curl downloads one
// twice over one kept-alive connection, resumes one from an offset and
// reads a range across the middle, every byte checked, and the thread
// slots are all given back.
// Not parallel, like TestThroughput: it moves a lot of bytes under -race,
// and TestRateLimit times curl beside it.
func TestPolledSendfile(t *testing.T) {
	needCurl(t)
	fx := newAssets(t, 12<<20)
	l := startServer(t, Config{Assets: fx.root.FS()})
	base, ln := l.url, l.ln
	big := fx.files["talos/v1.14.1/amd64/initramfs.xz"]
	u := base + "/assets/talos/v1.14.1/amd64/initramfs.xz"
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")

	out, err := curl(t, t.Context(), "-w", "%{num_connects}\n", "-o", a, "-o", b, u, u)
	must(t, err)
	if got := bytes.TrimSpace(out); !bytes.Equal(got, []byte("1\n0")) {
		t.Errorf("connections made per download: %q, want 1 then 0 (kept alive)", got)
	}
	for _, f := range []string{a, b} {
		got, _ := os.ReadFile(f)
		if !bytes.Equal(got, big) {
			t.Fatalf("%s: %d bytes, not the %d of the file", f, len(got), len(big))
		}
	}

	part := filepath.Join(dir, "part")
	must(t, os.WriteFile(part, big[:3<<20+7], 0o644))
	_, err = curl(t, t.Context(), "-C", "-", "-o", part, u)
	must(t, err)
	if got, _ := os.ReadFile(part); !bytes.Equal(got, big) {
		t.Fatalf("resumed download differs (%d bytes)", len(got))
	}

	got, err := curl(t, t.Context(), "-r", fmt.Sprintf("%d-%d", 3<<20+3, 9<<20), u)
	must(t, err)
	if !bytes.Equal(got, big[3<<20+3:9<<20+1]) {
		t.Fatalf("range: %d bytes, want %d", len(got), 9<<20+1-(3<<20+3))
	}
	if n := ln.polled.Load(); n != 4 {
		t.Errorf("%d downloads sent on their own thread, want 4", n)
	}
	if n := ln.busy.Load(); n != 0 {
		t.Errorf("%d thread slots still taken", n)
	}
}

// A client that asks for a large file and stops reading holds a send
// waiting in poll; shutting the server down still ends it promptly, and
// the client got a prefix of the file, not garbage.
func TestPolledSendfileStalledShutdown(t *testing.T) {
	fx := newAssets(t, 16<<20)
	l := startServer(t, Config{Assets: fx.root.FS(), ShutdownTimeout: 300 * time.Millisecond})
	base, ln, stop := l.url, l.ln, l.stop
	c, err := net.Dial("tcp", base[len("http://"):])
	must(t, err)
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(c, "GET /assets/talos/v1.14.1/amd64/initramfs.xz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	must(t, err)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head, fx.files["talos/v1.14.1/amd64/initramfs.xz"][:1<<20]) {
		t.Fatal("the first MiB differs from the file")
	}
	deadline := time.Now().Add(5 * time.Second)
	for ln.busy.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ln.busy.Load() != 1 {
		t.Fatal("the stalled download is not on its own thread")
	}
	time.Sleep(300 * time.Millisecond) // the send buffer is full; the sender polls
	if d := stop(); d > 3*time.Second {
		t.Errorf("Run took %v to return with a stalled download", d)
	}
	if n := ln.busy.Load(); n != 0 {
		t.Errorf("%d thread slots still taken after shutdown", n)
	}
}
