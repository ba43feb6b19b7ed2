package httpboot

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// corked reads TCP_CORK from c's socket.
func corked(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	must(t, err)
	var v int
	var gerr error
	must(t, rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK) }))
	must(t, gerr)
	return v
}

// TestCork checks that cork sets TCP_CORK on the request's TCP connection
// and that the returned function clears it; on a connection that is not a
// socket it must do nothing.
func TestCork(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	must(t, err)
	defer client.Close()
	server, err := ln.Accept()
	must(t, err)
	defer server.Close()
	pa, pb := net.Pipe()
	defer pa.Close()
	defer pb.Close()

	for _, tc := range []struct {
		name string
		conn net.Conn
	}{
		{"tcp", server},
		{"pipe", pa},
		{"none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.conn != nil {
				ctx = withConn(ctx, tc.conn)
			}
			r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/assets/x", nil)
			must(t, err)
			uncork := cork(r)
			sc, isSock := tc.conn.(*net.TCPConn)
			if isSock {
				if got := corked(t, sc); got != 1 {
					t.Fatalf("TCP_CORK while corked = %d, want 1", got)
				}
			}
			uncork()
			if isSock {
				if got := corked(t, sc); got != 0 {
					t.Fatalf("TCP_CORK after uncork = %d, want 0", got)
				}
			}
		})
	}
}

// TestCorkKeepAlive sends many small responses over one keep-alive
// connection. A cork left on would hold each response's last partial
// segment for the kernel's 200 ms cork timer, so twenty of them would take
// at least four seconds.
func TestCorkKeepAlive(t *testing.T) {
	t.Parallel()
	fx := newAssets(t, 1<<20)
	l := startServer(t, Config{Assets: fx.root.FS()})
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	const name = "talos/v1.14.1/amd64/vmlinuz"
	cases := []struct {
		rng  string
		want []byte
	}{
		{"", fx.files[name]},
		{"bytes=0-9", fx.files[name][:10]},
		{"bytes=1000-1099", fx.files[name][1000:1100]},
	}
	const rounds = 7
	start := time.Now()
	reused := 0
	for i := range rounds {
		for _, tc := range cases {
			ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
				GotConn: func(ci httptrace.GotConnInfo) {
					if ci.Reused {
						reused++
					}
				},
			})
			body := getBody(t, ctx, hc, l.url+"/assets/"+name, tc.rng)
			if !bytes.Equal(body, tc.want) {
				t.Fatalf("round %d, Range %q: got %d bytes, want %d (content differs)", i, tc.rng, len(body), len(tc.want))
			}
		}
	}
	took := time.Since(start)
	if n := rounds * len(cases); reused != n-1 {
		t.Errorf("%d of %d requests reused the connection, want %d", reused, n, n-1)
	}
	if took > 2*time.Second {
		t.Errorf("%d small responses over one connection took %v; a response is waiting for the cork timer", rounds*len(cases), took)
	}
}

func getBody(t *testing.T, ctx context.Context, hc *http.Client, url, rng string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	must(t, err)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := hc.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return b
}
