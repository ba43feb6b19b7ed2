package app

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// WebConfig configures the HTTP face of the app.
type WebConfig struct {
	// Listen is the address, e.g. "127.0.0.1:8080".
	Listen string
	// PIN is required from clients when Listen is not a loopback address.
	PIN string
	// UI is the built frontend (index.html at its root); nil or empty serves
	// a page that says how to build it.
	UI     fs.FS
	Logger *slog.Logger
}

// Web serves the app's services as JSON calls and its events as a
// server-sent event stream:
//
//	POST /api/call/<Service>.<Method>   body: JSON array of arguments
//	GET  /api/events                    text/event-stream
//	POST /api/login                     {"pin": "..."} → session cookie
//	GET  /healthz                       "ok"
type Web struct {
	app     *App
	methods *Methods
	cfg     WebConfig
	log     *slog.Logger
	auth    bool // clients must log in

	mu       sync.Mutex
	sessions map[string]time.Time // token → expiry
	failures []time.Time          // recent failed logins, for back-off
}

const (
	sessionCookie = "onramp_session"
	sessionTTL    = 12 * time.Hour
	pingEvery     = 15 * time.Second
	maxCallBody   = 1 << 20
)

// IsLoopbackListen reports whether addr ("host:port") only accepts
// connections from this machine.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return IsLoopbackListen(net.JoinHostPort(strings.Trim(host, "[]"), "0"))
}

// NewWeb builds the web transport. Listening beyond loopback without a PIN
// is refused: anyone on the cart network could otherwise drive Onramp.
func NewWeb(a *App, cfg WebConfig) (*Web, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := NewMethods(a.Services())
	if err != nil {
		return nil, err
	}
	w := &Web{
		app: a, methods: m, cfg: cfg,
		log:      cfg.Logger.With("component", "web"),
		auth:     !IsLoopbackListen(cfg.Listen),
		sessions: make(map[string]time.Time),
	}
	if w.auth && len(cfg.PIN) < 4 {
		return nil, fmt.Errorf("listen on %s: a non-loopback address needs an access PIN of at least 4 characters (--pin or ONRAMP_PIN)", cfg.Listen)
	}
	return w, nil
}

// Methods lists every "Service.Method" served under /api/call/.
func (w *Web) Methods() []string { return w.methods.Names() }

// Handler returns the HTTP handler.
func (w *Web) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(rw, "ok\n")
	})
	mux.HandleFunc("POST /api/login", w.login)
	mux.Handle("POST /api/call/{name}", w.guard(http.HandlerFunc(w.call)))
	mux.Handle("GET /api/events", w.guard(http.HandlerFunc(w.events)))
	mux.Handle("/", w.ui())
	return w.sameOrigin(mux)
}

// Run listens on cfg.Listen until ctx ends.
func (w *Web) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", w.cfg.Listen)
	if err != nil {
		return fmt.Errorf("web listen: %w", err)
	}
	return w.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends; it closes ln.
func (w *Web) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           w.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	w.log.Info("serving UI", "addr", ln.Addr().String(), "auth", w.auth)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("web serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close() // event streams outlive Shutdown's grace: cut them
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web serve: %w", err)
	}
	return nil
}

// sameOrigin refuses cross-site requests to the API: a page on another
// origin must not drive Onramp through the technician's browser. Browsers
// send Origin on cross-origin and on all POST requests.
func (w *Web) sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			// On loopback there is no PIN, so refuse names that only DNS
			// rebinding would send here.
			if !w.auth && !loopbackHost(r.Host) {
				writeError(rw, http.StatusForbidden, "host "+r.Host+" refused: this server only answers on loopback")
				return
			}
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
				writeError(rw, http.StatusForbidden, "cross-origin request refused")
				return
			}
			if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
				writeError(rw, http.StatusForbidden, "cross-site request refused")
				return
			}
		}
		next.ServeHTTP(rw, r)
	})
}

// guard lets a request through when auth is off, or it carries a live
// session cookie or the PIN as a bearer token (for scripts).
func (w *Web) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !w.auth || w.authenticated(r) {
			next.ServeHTTP(rw, r)
			return
		}
		writeError(rw, http.StatusUnauthorized, "PIN needed")
	})
}

func (w *Web) authenticated(r *http.Request) bool {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return subtle.ConstantTimeCompare([]byte(tok), []byte(w.cfg.PIN)) == 1
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	exp, ok := w.sessions[c.Value]
	if !ok || time.Now().After(exp) {
		delete(w.sessions, c.Value)
		return false
	}
	return true
}

// login trades the PIN for a session cookie. After repeated failures it
// slows down: five wrong PINs in a minute lock logins for that minute.
func (w *Web) login(rw http.ResponseWriter, r *http.Request) {
	if !w.auth {
		rw.WriteHeader(http.StatusNoContent)
		return
	}
	now := time.Now()
	w.mu.Lock()
	recent := w.failures[:0]
	for _, t := range w.failures {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	w.failures = recent
	locked := len(recent) >= 5
	w.mu.Unlock()
	if locked {
		writeError(rw, http.StatusTooManyRequests, "too many wrong PINs: wait a minute")
		return
	}
	var body struct {
		PIN string `json:"pin"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil {
		writeError(rw, http.StatusBadRequest, "login: body must be {\"pin\": \"...\"}")
		return
	}
	if subtle.ConstantTimeCompare([]byte(body.PIN), []byte(w.cfg.PIN)) != 1 {
		w.mu.Lock()
		w.failures = append(w.failures, now)
		w.mu.Unlock()
		w.log.Warn("wrong PIN", "remote", r.RemoteAddr)
		writeError(rw, http.StatusUnauthorized, "wrong PIN")
		return
	}
	var raw [32]byte
	rand.Read(raw[:])
	tok := hex.EncodeToString(raw[:])
	w.mu.Lock()
	w.sessions[tok] = now.Add(sessionTTL)
	w.mu.Unlock()
	http.SetCookie(rw, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second),
	})
	rw.WriteHeader(http.StatusNoContent)
}

func (w *Web) call(rw http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxCallBody))
	if err != nil {
		writeError(rw, http.StatusRequestEntityTooLarge, "call "+name+": body too large")
		return
	}
	res, err := w.methods.Call(name, body)
	var argErr *ArgError
	switch {
	case errors.Is(err, ErrNoMethod):
		writeError(rw, http.StatusNotFound, err.Error())
		return
	case errors.As(err, &argErr):
		writeError(rw, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		writeError(rw, http.StatusUnprocessableEntity, err.Error())
		return
	}
	writeJSON(rw, http.StatusOK, res)
}

func (w *Web) events(rw http.ResponseWriter, r *http.Request) {
	fl, ok := rw.(http.Flusher)
	if !ok {
		writeError(rw, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	msgs, cancel := w.app.Bus.Subscribe()
	defer cancel()
	h := rw.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rw.WriteHeader(http.StatusOK)
	send := func(name string, data any) bool {
		b, err := json.Marshal(data)
		if err != nil {
			b = []byte("null")
		}
		if _, err := fmt.Fprintf(rw, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !send("hello", map[string]any{"time": time.Now().UTC()}) {
		return
	}
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if !send("ping", map[string]any{"time": time.Now().UTC()}) {
				return
			}
		case m, ok := <-msgs:
			if !ok || !send(m.Name, m.Data) {
				return
			}
		}
	}
}

// ui serves the built frontend, falling back to index.html for unknown
// paths so deep links load the app.
func (w *Web) ui() http.Handler {
	ui := w.cfg.UI
	if ui == nil {
		return http.HandlerFunc(notBuilt)
	}
	if _, err := fs.Stat(ui, "index.html"); err != nil {
		return http.HandlerFunc(notBuilt)
	}
	files := http.FileServerFS(ui)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if p != "" {
			if _, err := fs.Stat(ui, p); err != nil {
				r = r.Clone(r.Context())
				r.URL.Path = "/"
			}
		}
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			rw.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(rw, r)
	})
}

func notBuilt(rw http.ResponseWriter, _ *http.Request) {
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(rw, notBuiltPage)
}

const notBuiltPage = `<!doctype html><title>Onramp</title><h1>Onramp</h1>
<p>The user interface is not built into this binary. Run <code>make build</code> (or <code>make run</code>).</p>`

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	json.NewEncoder(rw).Encode(v)
}

func writeError(rw http.ResponseWriter, status int, msg string) {
	writeJSON(rw, status, map[string]string{"error": msg})
}
