package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func newTestApp(t *testing.T) *App {
	t.Helper()
	a, err := New(Config{Build: BuildInfo{Version: "v-test", Commit: "abc"}, DataDir: t.TempDir(), Mode: ModeWeb})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func post(t *testing.T, h http.Handler, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Host = "127.0.0.1:8080"
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// Every method bound to Wails (App.Services) must be reachable over HTTP.
// Methods with parameters are called with zero values: they may reject
// them, but the route must exist and answer with JSON.
func TestEveryBoundMethodHasAWebRoute(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	w, err := NewWeb(a, WebConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	h := w.Handler()
	n := 0
	for _, svc := range a.Services() {
		typ := reflect.TypeOf(svc)
		for i := range typ.NumMethod() {
			m := typ.Method(i)
			if m.Name == "Quit" {
				continue // would end a desktop app; covered in TestShellQuit
			}
			args := make([]any, 0, m.Type.NumIn()-1)
			for j := 1; j < m.Type.NumIn(); j++ {
				args = append(args, reflect.Zero(m.Type.In(j)).Interface())
			}
			body, _ := json.Marshal(args)
			name := typ.Elem().Name() + "." + m.Name
			rec := post(t, h, "/api/call/"+name, string(body), nil)
			if rec.Code == http.StatusNotFound {
				t.Errorf("%s: bound to Wails but no web route (404: %s)", name, rec.Body)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Errorf("%s: answer is not JSON: %q", name, rec.Body)
			}
			n++
		}
	}
	if n < 5 {
		t.Fatalf("only %d methods found: services not registered?", n)
	}
	if got := len(w.Methods()); got != n+1 { // +1: Quit
		t.Errorf("web serves %d methods, Wails binds %d", got, n+1)
	}
}

func TestCallErrors(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	w, err := NewWeb(a, WebConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	h := w.Handler()
	tests := []struct {
		name, path, body string
		hdr              map[string]string
		code             int
		errPart          string
	}{
		{"unknown method", "/api/call/System.Nope", "[]", nil, 404, "no such method"},
		{"args not array", "/api/call/Settings.Set", `{"theme":"dark"}`, nil, 400, "JSON array"},
		{"wrong arg count", "/api/call/System.Info", `[1]`, nil, 400, "takes 0 argument"},
		{"validation", "/api/call/Settings.Set", `[{"theme":"pink","netbootMode":"auto"}]`, nil, 422, "theme"},
		{"cross origin", "/api/call/System.Info", `[]`, map[string]string{"Origin": "http://evil.example"}, 403, "cross-origin"},
		{"cross site", "/api/call/System.Info", `[]`, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross-site"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := post(t, h, tc.path, tc.body, tc.hdr)
			if rec.Code != tc.code {
				t.Fatalf("code = %d, want %d (%s)", rec.Code, tc.code, rec.Body)
			}
			var e struct{ Error string }
			json.Unmarshal(rec.Body.Bytes(), &e)
			if !strings.Contains(e.Error, tc.errPart) {
				t.Fatalf("error = %q, want it to mention %q", e.Error, tc.errPart)
			}
		})
	}
}

func TestDNSRebindingRefusedOnLoopback(t *testing.T) {
	t.Parallel()
	w, err := NewWeb(newTestApp(t), WebConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/call/System.Info", strings.NewReader("[]"))
	req.Host = "attacker.example:8080"
	rec := httptest.NewRecorder()
	w.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("code = %d, want 403", rec.Code)
	}
}

func TestSettingsRoundTripOverWeb(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	w, _ := NewWeb(a, WebConfig{Listen: "127.0.0.1:0"})
	h := w.Handler()
	rec := post(t, h, "/api/call/Settings.Set", `[{"theme":"dark","iface":"eth1","netbootMode":"proxy"}]`, nil)
	if rec.Code != 200 {
		t.Fatalf("set: %d %s", rec.Code, rec.Body)
	}
	// A new App on the same data dir sees the saved settings.
	b, err := New(Config{DataDir: a.System.dataDir, Mode: ModeWeb})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := b.Settings.Get()
	want := Preferences{Theme: "dark", Iface: "eth1", NetbootMode: "proxy"}
	if got != want {
		t.Fatalf("reloaded settings = %+v, want %+v", got, want)
	}
}

func TestNonLoopbackNeedsPIN(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	if _, err := NewWeb(a, WebConfig{Listen: "0.0.0.0:8080"}); err == nil {
		t.Fatal("non-loopback listen without PIN must be refused")
	}
	w, err := NewWeb(a, WebConfig{Listen: "0.0.0.0:8080", PIN: "4711"})
	if err != nil {
		t.Fatal(err)
	}
	h := w.Handler()
	if rec := post(t, h, "/api/call/System.Info", "[]", nil); rec.Code != http.StatusUnauthorized {
		t.Fatalf("without PIN: %d, want 401", rec.Code)
	}
	if rec := post(t, h, "/api/login", `{"pin":"0000"}`, nil); rec.Code != http.StatusUnauthorized {
		t.Fatalf("wrong PIN: %d, want 401", rec.Code)
	}
	rec := post(t, h, "/api/login", `{"pin":"4711"}`, nil)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("right PIN: %d, want 204", rec.Code)
	}
	cookie := rec.Result().Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie must be HttpOnly and SameSite=Strict: %+v", cookie)
	}
	if rec := post(t, h, "/api/call/System.Info", "[]", map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}); rec.Code != 200 {
		t.Fatalf("with session: %d %s", rec.Code, rec.Body)
	}
	if rec := post(t, h, "/api/call/System.Info", "[]", map[string]string{"Authorization": "Bearer 4711"}); rec.Code != 200 {
		t.Fatalf("with bearer PIN: %d", rec.Code)
	}
	// Five wrong PINs lock logins for a minute, even the right one.
	for range 5 {
		post(t, h, "/api/login", `{"pin":"9999"}`, nil)
	}
	if rec := post(t, h, "/api/login", `{"pin":"4711"}`, nil); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures: %d, want 429", rec.Code)
	}
}

// A real listener: the event stream delivers a published event, and Serve
// returns cleanly when the context ends even with a stream open.
func TestEventStreamAndShutdown(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	w, _ := NewWeb(a, WebConfig{Listen: "127.0.0.1:0"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	var got bytes.Buffer
	deadline := time.Now().Add(5 * time.Second)
	published := false
	for time.Now().Before(deadline) && !strings.Contains(got.String(), "event: test:thing") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
		if !published && strings.Contains(got.String(), "event: hello") {
			a.Bus.Publish("test:thing", map[string]int{"n": 7})
			published = true
		}
	}
	if !strings.Contains(got.String(), "event: test:thing\ndata: {\"n\":7}") {
		t.Fatalf("stream did not carry the event:\n%s", got.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestShellQuit(t *testing.T) {
	t.Parallel()
	s := NewShell(ModeKiosk, "2468", false)
	quit := false
	s.setQuit(func() { quit = true })
	if s.mayClose(t.Context()) {
		t.Fatal("kiosk window must not close before the PIN")
	}
	if err := s.Quit("1111"); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("wrong PIN: err = %v", err)
	}
	if err := s.Quit("2468"); err != nil || !quit || !s.mayClose(t.Context()) {
		t.Fatalf("right PIN: err=%v quit=%v", err, quit)
	}
	if err := NewShell(ModeWeb, "", false).Quit(""); err == nil {
		t.Fatal("web face cannot quit from the UI")
	}
}

func TestCorruptSettingsAreNotOverwritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, err := New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Settings.Set(Preferences{Theme: "light", NetbootMode: "auto"}); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(dir+"/settings.json", "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt settings: err = %v, want a clear 'corrupt' error", err)
	}
}
