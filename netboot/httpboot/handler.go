package httpboot

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"onramp/netboot"
)

// Handler serves the routes listed in the package comment.
type Handler struct {
	assets    fs.FS
	boot      fs.FS
	booter    netboot.Booter
	sink      netboot.Sink
	log       *slog.Logger
	base      string
	tokens    *ConfigTokens
	limits    *limiters // nil = no rate cap
	rateLimit int64

	wg sync.WaitGroup // running requests, for Run's bounded wait
}

// NewHandler builds the Handler from cfg (Addr and the timeouts are unused).
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.RateLimit < 0 {
		return nil, errors.New("create http boot handler: negative rate limit")
	}
	h := &Handler{
		assets: cfg.Assets, boot: cfg.BootFiles, booter: cfg.Booter, sink: cfg.Sink, log: cfg.Logger,
		base: strings.TrimRight(cfg.ScriptBase, "/"), tokens: cfg.ConfigEndpoint, rateLimit: cfg.RateLimit,
	}
	if h.sink == nil {
		h.sink = netboot.Discard
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "httpboot")
	if cfg.RateLimit > 0 {
		h.limits = newLimiters(cfg.RateLimit)
	}
	return h, nil
}

func (h *Handler) wait(max time.Duration) {
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(max):
		h.log.Warn("handlers still running after shutdown", "waited", max)
	}
}

// ServeHTTP routes by path prefix. It does not use http.ServeMux: ServeMux
// answers "/assets/../x" with a redirect to the cleaned path, and a path
// that tries to leave the root should get a plain 400 instead.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.wg.Add(1)
	defer h.wg.Done()
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/assets/"):
		h.serveFile(w, r, h.assets, "/assets/")
	case strings.HasPrefix(p, "/boot/"):
		h.serveFile(w, r, h.boot, "/boot/")
	case p == "/ipxe":
		h.serveScript(w, r)
	case strings.HasPrefix(p, "/config/"):
		h.serveConfig(w, r)
	default:
		http.NotFound(w, r)
	}
}

// validName reports whether name (already percent-decoded) names a file
// inside a root: an fs.ValidPath without backslashes or control characters.
func validName(name string) bool {
	if name == "" || name == "." || !fs.ValidPath(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return false
		}
	}
	return true
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) emit(e netboot.Event) {
	e.Time = time.Now()
	h.sink.Emit(e)
}

// printable makes an untrusted string safe for logs and events.
func printable(s string) string {
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}

// minRate is the slowest a download may go before the write deadline cuts
// the client off: 64 KiB/s, well below any NIC iPXE drives.
const minRate = 64 << 10

func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, root fs.FS, prefix string) {
	start := time.Now()
	ip := clientIP(r)
	name := strings.TrimPrefix(r.URL.Path, prefix)
	file := strings.TrimPrefix(prefix, "/") + name
	fail := func(code int, why string) {
		h.emit(netboot.Event{Kind: netboot.EventHTTPError, IP: ip, File: printable(file), Err: why})
		h.log.Info("request refused", "ip", ip, "path", printable(r.URL.Path), "status", code)
		http.Error(w, http.StatusText(code), code)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fail(http.StatusMethodNotAllowed, "the client used "+printable(r.Method)+"; Onramp only serves downloads")
		return
	}
	if root == nil {
		fail(http.StatusNotFound, "nothing is configured to be served under "+prefix)
		return
	}
	if !validName(name) {
		fail(http.StatusBadRequest, "the client asked for a path outside the served files; nothing was sent")
		return
	}
	f, err := root.Open(name)
	if err != nil {
		fail(http.StatusNotFound, "the client asked for "+printable(file)+", which Onramp does not have; check the assets directory")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		fail(http.StatusNotFound, "the client asked for "+printable(file)+", which is not a file (directory listings are off)")
		return
	}
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		fail(http.StatusInternalServerError, "the file system holding "+printable(file)+" cannot seek; Onramp cannot serve ranges from it")
		return
	}

	probe := r.Method == http.MethodHead
	if !probe {
		h.emit(netboot.Event{Kind: netboot.EventHTTPStart, IP: ip, File: file, Bytes: st.Size(), Detail: r.Header.Get("Range")})
	}
	cw := &countingWriter{ResponseWriter: w}
	var out http.ResponseWriter = cw
	rate := int64(0)
	if h.limits != nil {
		b := h.limits.acquire(ip)
		defer h.limits.release(ip)
		out = &rateWriter{ResponseWriter: cw, b: b, ctx: r.Context()}
		rate = h.rateLimit
	}
	// A client that stops reading would hold the connection for ever:
	// bound the whole response by the file size at a slow minimum rate.
	floor := int64(minRate)
	if rate > 0 && rate/2 < floor {
		floor = max(rate/2, 1)
	}
	deadline := 2*time.Minute + time.Duration(st.Size()/floor)*time.Second
	_ = http.NewResponseController(cw).SetWriteDeadline(time.Now().Add(deadline))

	w.Header().Set("Content-Type", contentType(name))
	http.ServeContent(out, r, name, st.ModTime(), rs)

	dur := time.Since(start)
	want, _ := strconv.ParseInt(cw.Header().Get("Content-Length"), 10, 64)
	switch {
	case probe:
		h.emit(netboot.Event{Kind: netboot.EventHTTPDone, IP: ip, File: file, Duration: dur,
			Detail: "size probe (HEAD), as UEFI HTTP boot does before the download"})
	case cw.status >= 400:
		h.emit(netboot.Event{Kind: netboot.EventHTTPError, IP: ip, File: file, Duration: dur,
			Err: "the client's request could not be answered (" + strconv.Itoa(cw.status) + " " + http.StatusText(cw.status) + ")"})
	case cw.status == http.StatusNotModified:
		h.emit(netboot.Event{Kind: netboot.EventHTTPDone, IP: ip, File: file, Duration: dur, Detail: "not modified"})
	case cw.n < want:
		h.emit(netboot.Event{Kind: netboot.EventHTTPError, IP: ip, File: file, Bytes: cw.n, Duration: dur,
			Err: "the download stopped after " + strconv.FormatInt(cw.n, 10) + " of " + strconv.FormatInt(want, 10) +
				" bytes: the machine closed the connection, rebooted, or stopped reading"})
	default:
		h.emit(netboot.Event{Kind: netboot.EventHTTPDone, IP: ip, File: file, Bytes: cw.n, Duration: dur, Detail: r.Header.Get("Range")})
	}
	h.log.Debug("served", "ip", ip, "file", printable(file), "method", r.Method, "status", cw.status, "bytes", cw.n, "duration", dur)
}

// contentType is the media type a file is served with. UEFI HTTP boot
// (UEFI 2.10 §24.7.2.1; EDK2 HttpBootDxe) decides by it how to use the
// download: application/vnd.efi-iso is registered as a RAM disk of type
// virtual CD and application/vnd.efi-img as a virtual disk, and the firmware
// boots the EFI image found on it; anything else is loaded as an EFI
// executable (EDK2 falls back to the file name's extension only when the
// type is absent). iPXE ignores the type.
func contentType(name string) string {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".iso"):
		return "application/vnd.efi-iso"
	case strings.HasSuffix(lower, ".img"):
		return "application/vnd.efi-img"
	}
	return "application/octet-stream"
}

// countingWriter counts body bytes and keeps the status. It implements
// io.ReaderFrom by delegating, so http.ServeContent's io.CopyN still reaches
// net/http's sendfile path.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadFrom hands r to the underlying writer's ReadFrom (sendfile for an
// *os.File behind an io.LimitedReader).
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
