package httpboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"onramp/netboot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// assetsFixture builds an assets root with a kernel, an initramfs, a
// directory, and symlinks that point out of the root; and a secret beside it.
type assetsFixture struct {
	dir   string
	root  *os.Root
	files map[string][]byte
}

func newAssets(t *testing.T, bigSize int) *assetsFixture {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "assets")
	must(t, os.MkdirAll(filepath.Join(dir, "talos/v1.14.1/amd64"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "secureboot"), 0o755))
	fx := &assetsFixture{dir: dir, files: map[string][]byte{}}
	for name, size := range map[string]int{
		"talos/v1.14.1/amd64/vmlinuz":        300_000,
		"talos/v1.14.1/amd64/initramfs.xz":   bigSize,
		"talos/v1.14.1/amd64/uki.signed.efi": 50_000,
		"secureboot/enroll.iso":              40_960,
	} {
		b := make([]byte, size)
		rand.Read(b)
		must(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), b, 0o644))
		fx.files[name] = b
	}
	must(t, os.WriteFile(filepath.Join(base, "secret"), []byte("SECRET OUTSIDE THE ROOT\n"), 0o644))
	must(t, os.Symlink("../secret", filepath.Join(dir, "escape")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "abs")))
	must(t, os.Symlink("talos/v1.14.1/amd64/vmlinuz", filepath.Join(dir, "vmlinuz")))
	root, err := os.OpenRoot(dir)
	must(t, err)
	t.Cleanup(func() { root.Close() })
	fx.root = root
	fx.files["vmlinuz"] = fx.files["talos/v1.14.1/amd64/vmlinuz"]
	return fx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	approvedMAC    = "52:54:00:77:00:10"
	kernelDecision = netboot.Decision{Kind: netboot.BootKernel, Kernel: "talos/v1.14.1/amd64/vmlinuz",
		Initrd: "talos/v1.14.1/amd64/initramfs.xz", Cmdline: []string{"talos.platform=metal", "console=ttyS0"}}
)

// testBooter approves one MAC, fails for another and refuses the rest.
func testBooter() netboot.Booter {
	return netboot.BooterFunc(func(ctx context.Context, m netboot.Machine) (netboot.Decision, error) {
		switch m.MAC.String() {
		case approvedMAC:
			return kernelDecision, nil
		case "52:54:00:77:00:11":
			return netboot.Decision{Kind: netboot.BootUKI, UKI: "talos/v1.14.1/amd64/uki.signed.efi"}, nil
		case "52:54:00:77:00:12":
			return netboot.Decision{Kind: netboot.BootKernel, Kernel: "k", Initrd: "i", Cmdline: []string{"x\nshell"}}, nil
		case "52:54:00:77:00:13":
			return netboot.Decision{}, errors.New("store unavailable")
		case "52:54:00:77:00:14":
			return netboot.Decision{Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"}, nil
		}
		return netboot.Decision{}, netboot.ErrNotApproved
	})
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHandler(t *testing.T) {
	t.Parallel()
	fx := newAssets(t, 200_000)
	boot := t.TempDir()
	ipxeBin := []byte("MZ fake ipxe.efi")
	must(t, os.WriteFile(filepath.Join(boot, "ipxe.efi"), ipxeBin, 0o644))
	bootRoot, err := os.OpenRoot(boot)
	must(t, err)
	t.Cleanup(func() { bootRoot.Close() })
	h, err := NewHandler(Config{Assets: fx.root.FS(), BootFiles: bootRoot.FS(), Booter: testBooter(), ScriptBase: "http://10.77.0.1:8080"})
	must(t, err)
	modTime := func() string {
		st, _ := os.Stat(filepath.Join(fx.dir, "talos/v1.14.1/amd64/vmlinuz"))
		return st.ModTime().UTC().Add(time.Second).Format(http.TimeFormat)
	}()
	vmlinuz := fx.files["talos/v1.14.1/amd64/vmlinuz"]
	tests := []struct {
		name       string
		method     string
		target     string
		header     map[string]string
		wantCode   int
		wantBody   []byte // nil = not checked
		wantSubstr string
	}{
		{"asset", "GET", "/assets/talos/v1.14.1/amd64/vmlinuz", nil, 200, vmlinuz, ""},
		{"asset head", "HEAD", "/assets/talos/v1.14.1/amd64/vmlinuz", nil, 200, []byte{}, ""},
		{"asset range", "GET", "/assets/talos/v1.14.1/amd64/vmlinuz", map[string]string{"Range": "bytes=100-199"}, 206, vmlinuz[100:200], ""},
		{"asset suffix range", "GET", "/assets/talos/v1.14.1/amd64/vmlinuz", map[string]string{"Range": "bytes=-10"}, 206, vmlinuz[len(vmlinuz)-10:], ""},
		{"asset multi range", "GET", "/assets/talos/v1.14.1/amd64/vmlinuz", map[string]string{"Range": "bytes=0-9,20-29"}, 206, nil, "multipart/byteranges"},
		{"asset bad range", "GET", "/assets/talos/v1.14.1/amd64/vmlinuz", map[string]string{"Range": "bytes=9999999-"}, 416, nil, ""},
		{"asset not modified", "GET", "/assets/talos/v1.14.1/amd64/vmlinuz", map[string]string{"If-Modified-Since": modTime}, 304, []byte{}, ""},
		{"symlink inside", "GET", "/assets/vmlinuz", nil, 200, vmlinuz, ""},
		{"symlink escape", "GET", "/assets/escape", nil, 404, nil, ""},
		{"symlink absolute", "GET", "/assets/abs", nil, 404, nil, ""},
		{"dotdot", "GET", "/assets/../secret", nil, 400, nil, ""},
		{"dotdot deep", "GET", "/assets/talos/../../secret", nil, 400, nil, ""},
		{"encoded dotdot", "GET", "/assets/%2e%2e/secret", nil, 400, nil, ""},
		{"encoded slash dotdot", "GET", "/assets/..%2fsecret", nil, 400, nil, ""},
		{"double encoded", "GET", "/assets/%252e%252e/secret", nil, 404, nil, ""},
		{"backslash", "GET", `/assets/..\secret`, nil, 400, nil, ""},
		{"encoded backslash", "GET", "/assets/%5c..%5csecret", nil, 400, nil, ""},
		{"nul", "GET", "/assets/vmlinuz%00", nil, 400, nil, ""},
		{"directory", "GET", "/assets/talos/", nil, 400, nil, ""},
		{"directory no slash", "GET", "/assets/talos", nil, 404, nil, ""},
		{"root", "GET", "/assets/", nil, 400, nil, ""},
		{"missing", "GET", "/assets/nope", nil, 404, nil, ""},
		{"post", "POST", "/assets/vmlinuz", nil, 405, nil, ""},
		{"boot file", "GET", "/boot/ipxe.efi", nil, 200, ipxeBin, ""},
		{"boot missing", "GET", "/boot/snp.efi", nil, 404, nil, ""},
		{"unknown route", "GET", "/etc/passwd", nil, 404, nil, ""},
		{"script kernel", "GET", "/ipxe?mac=52:54:00:77:00:10&uuid=0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0&platform=efi&buildarch=x86_64", nil, 200, nil,
			"kernel http://10.77.0.1:8080/assets/talos/v1.14.1/amd64/vmlinuz initrd=initramfs.xz talos.platform=metal console=ttyS0 || goto failed\n"},
		{"script uki hyphen mac", "GET", "/ipxe?mac=52-54-00-77-00-11", nil, 200, nil, "chain http://10.77.0.1:8080/assets/talos/v1.14.1/amd64/uki.signed.efi"},
		{"script not approved", "GET", "/ipxe?mac=52:54:00:99:99:99", nil, 403, nil, "#!ipxe\necho Onramp: this machine (52:54:00:99:99:99) is not approved"},
		{"script no mac", "GET", "/ipxe?mac=${net0/mac}", nil, 400, nil, "#!ipxe\necho Onramp: this request carries no MAC"},
		{"script bad decision", "GET", "/ipxe?mac=52:54:00:77:00:12", nil, 500, nil, "#!ipxe\necho Onramp: the boot settings"},
		{"script booter error", "GET", "/ipxe?mac=52:54:00:77:00:13", nil, 500, nil, "#!ipxe\necho Onramp: could not decide"},
		{"config off", "GET", "/config/abc?mac=52:54:00:77:00:10", nil, 404, nil, ""},
		{"script enroll", "GET", "/ipxe?mac=52:54:00:77:00:14&platform=efi&buildarch=x86_64", nil, 200, nil,
			"sanboot --no-describe http://10.77.0.1:8080/assets/secureboot/enroll.iso || goto failed\n"},
		// UEFI HTTP boot mounts an ISO as a RAM disk only when told its type.
		{"iso media type", "GET", "/assets/secureboot/enroll.iso", nil, 200, nil, "application/vnd.efi-iso"},
		{"iso media type head", "HEAD", "/assets/secureboot/enroll.iso", nil, 200, []byte{}, "application/vnd.efi-iso"},
		{"efi media type", "GET", "/assets/talos/v1.14.1/amd64/uki.signed.efi", nil, 200, nil, "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tt.method, "http://10.77.0.1:8080/", nil)
			// Set the raw path by hand: httptest.NewRequest would reject or
			// clean some of these, a real client with --path-as-is does not.
			u, err := url.Parse(tt.target)
			must(t, err)
			req.URL = u
			req.RequestURI = tt.target
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Fatalf("%s %s = %d, want %d; body %q", tt.method, tt.target, rec.Code, tt.wantCode, trunc(rec.Body.Bytes()))
			}
			if tt.wantBody != nil && !bytes.Equal(rec.Body.Bytes(), tt.wantBody) {
				t.Fatalf("body = %d bytes %q, want %d bytes", rec.Body.Len(), trunc(rec.Body.Bytes()), len(tt.wantBody))
			}
			if tt.wantSubstr != "" && !strings.Contains(rec.Body.String()+rec.Header().Get("Content-Type"), tt.wantSubstr) {
				t.Fatalf("response %q lacks %q", trunc(rec.Body.Bytes()), tt.wantSubstr)
			}
			if bytes.Contains(rec.Body.Bytes(), []byte("SECRET")) || bytes.Contains(rec.Body.Bytes(), []byte("root:")) {
				t.Fatal("response carries a file from outside the root")
			}
		})
	}
}

func trunc(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func TestScriptEvents(t *testing.T) {
	t.Parallel()
	rec := &netboot.Recorder{}
	var gotMachine netboot.Machine
	h, err := NewHandler(Config{Sink: rec, Booter: netboot.BooterFunc(func(ctx context.Context, m netboot.Machine) (netboot.Decision, error) {
		gotMachine = m
		return netboot.Decision{Kind: netboot.BootLocal}, nil
	})})
	must(t, err)
	req := httptest.NewRequest("GET", "/ipxe?mac=52:54:00:77:00:10&uuid=0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0&platform=efi&buildarch=arm64", nil)
	req.RemoteAddr = "10.77.0.50:1234"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "\nexit\n") || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("got %d %q", w.Code, w.Body.String())
	}
	if gotMachine.MAC.String() != "52:54:00:77:00:10" || gotMachine.UUID != "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0" || gotMachine.Arch != netboot.ArchUEFIarm64 {
		t.Errorf("Booter got %+v", gotMachine)
	}
	evs := rec.Events()
	if len(evs) != 1 || evs[0].Kind != netboot.EventIPXEScript || evs[0].MAC != "52:54:00:77:00:10" || evs[0].IP != "10.77.0.50" || evs[0].Detail != "local" {
		t.Errorf("events = %+v", evs)
	}
	req = httptest.NewRequest("GET", "/ipxe?mac=52%3A54%3A00%3A77%3A00%3A10&arch=0", nil)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if gotMachine.Arch != netboot.ArchBIOS || gotMachine.UUID != "" {
		t.Errorf("arch=0 without uuid: Booter got %+v", gotMachine)
	}
}

func TestAssetEvents(t *testing.T) {
	t.Parallel()
	fx := newAssets(t, 10_000)
	rec := &netboot.Recorder{}
	h, err := NewHandler(Config{Assets: fx.root.FS(), Sink: rec})
	must(t, err)
	for _, target := range []string{"/assets/vmlinuz", "/assets/../secret"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = target
		req.RemoteAddr = "10.77.0.50:1234"
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	evs := rec.Events()
	if len(evs) != 3 {
		t.Fatalf("events = %+v, want start, done, error", evs)
	}
	if evs[0].Kind != netboot.EventHTTPStart || evs[1].Kind != netboot.EventHTTPDone || evs[1].Bytes != 300_000 || evs[1].IP != "10.77.0.50" || evs[1].File != "assets/vmlinuz" {
		t.Errorf("download events = %+v", evs[:2])
	}
	if evs[2].Kind != netboot.EventHTTPError || evs[2].Err == "" {
		t.Errorf("traversal event = %+v", evs[2])
	}
}

// readFromRecorder is a ResponseWriter that records what ReadFrom got.
type readFromRecorder struct {
	*httptest.ResponseRecorder
	got []io.Reader
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.got = append(r.got, src)
	return io.Copy(r.ResponseRecorder, src)
}

// TestSendfileKept checks that the byte-counting wrapper hands ServeContent's
// reader (an io.LimitedReader over the *os.File) to the underlying ReadFrom,
// which is where net/http uses sendfile.
func TestSendfileKept(t *testing.T) {
	t.Parallel()
	fx := newAssets(t, 10_000)
	h, err := NewHandler(Config{Assets: fx.root.FS()})
	must(t, err)
	for _, rng := range []string{"", "bytes=5-99"} {
		w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
		req := httptest.NewRequest("GET", "/assets/vmlinuz", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		h.ServeHTTP(w, req)
		if len(w.got) != 1 {
			t.Fatalf("Range %q: ReadFrom called %d times, want 1", rng, len(w.got))
		}
		lr, ok := w.got[0].(*io.LimitedReader)
		if !ok {
			t.Fatalf("ReadFrom got %T, want *io.LimitedReader", w.got[0])
		}
		if _, ok := lr.R.(*os.File); !ok {
			t.Fatalf("ReadFrom got a LimitedReader over %T, want *os.File", lr.R)
		}
	}
}

func TestConfigEndpoint(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	secretBody := "machine:\n  token: SUPERSECRETCLUSTERKEY\n"
	src := ConfigSourceFunc(func(ctx context.Context, mac net.HardwareAddr) ([]byte, error) {
		return []byte(secretBody + "# for " + mac.String() + "\n"), nil
	})
	tokens := NewConfigTokens(src, TokenOptions{TTL: time.Minute, Uses: 1, Now: clock})
	logs := &logBuf{}
	rec := &netboot.Recorder{}
	h, err := NewHandler(Config{ConfigEndpoint: tokens, Sink: rec, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	must(t, err)
	mac, _ := net.ParseMAC("52:54:00:77:00:10")
	other := "52:54:00:77:00:99"
	get := func(tok, mac string) (int, string) {
		req := httptest.NewRequest("GET", "/config/"+tok+"?mac="+mac, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}

	tok, err := tokens.Issue(mac)
	must(t, err)
	if len(tok) < 22 { // 128 bits in base64url
		t.Fatalf("token %d chars, want >= 22", len(tok))
	}
	tok2, _ := tokens.Issue(mac)
	if tok2 == tok {
		t.Fatal("two tokens are equal")
	}
	if code, _ := get(tok, ""); code != 403 {
		t.Errorf("no mac: %d, want 403", code)
	}
	if code, body := get(tok, approvedMAC); code != 200 || !strings.Contains(body, "for 52:54:00:77:00:10") {
		t.Errorf("first fetch: %d %q", code, body)
	}
	if code, _ := get(tok, approvedMAC); code != 403 {
		t.Errorf("second fetch of a one-shot token: %d, want 403", code)
	}
	if code, _ := get(tok2, other); code != 403 {
		t.Errorf("other machine: %d, want 403", code)
	}
	if code, _ := get(tok2, approvedMAC); code != 403 {
		t.Errorf("token after use by another machine: %d, want 403 (burned)", code)
	}
	tok3, _ := tokens.Issue(mac)
	advance(2 * time.Minute)
	if code, _ := get(tok3, approvedMAC); code != 403 {
		t.Errorf("expired token: %d, want 403", code)
	}
	if code, _ := get("guess", approvedMAC); code != 403 {
		t.Errorf("guessed token: %d, want 403", code)
	}
	tok4, _ := tokens.Issue(mac)
	tokens.Revoke(mac)
	if code, _ := get(tok4, approvedMAC); code != 403 {
		t.Errorf("revoked token: %d, want 403", code)
	}
	if tokens.Len() != 0 {
		t.Errorf("%d tokens left", tokens.Len())
	}
	multi := NewConfigTokens(src, TokenOptions{Uses: 2})
	tm, _ := multi.Issue(mac)
	for i, want := range []error{nil, nil, ErrTokenUnknown} {
		if _, err := multi.Redeem(t.Context(), tm, mac); !errors.Is(err, want) {
			t.Errorf("use %d of a 2-use token: %v, want %v", i+1, err, want)
		}
	}
	all := logs.String()
	for _, e := range rec.Events() {
		all += e.File + e.Err + e.Detail
	}
	for _, secret := range []string{tok, tok2, tok3, tok4, "SUPERSECRETCLUSTERKEY"} {
		if strings.Contains(all, secret) {
			t.Errorf("a token or config body appears in logs or events")
		}
	}
	if !strings.Contains(ConfigURL("http://10.77.0.1:8080/", "T"), "http://10.77.0.1:8080/config/T?mac=${mac}") {
		t.Errorf("ConfigURL = %q", ConfigURL("http://10.77.0.1:8080/", "T"))
	}
}
