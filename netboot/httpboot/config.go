package httpboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"onramp/netboot"
)

// ConfigSource hands out the machine config for one machine. The app
// implements it (talos config generation); it is only asked after a valid,
// unexpired token bound to that MAC was presented.
type ConfigSource interface {
	Config(ctx context.Context, mac net.HardwareAddr) ([]byte, error)
}

// ConfigSourceFunc adapts a function to ConfigSource.
type ConfigSourceFunc func(ctx context.Context, mac net.HardwareAddr) ([]byte, error)

// Config calls f.
func (f ConfigSourceFunc) Config(ctx context.Context, mac net.HardwareAddr) ([]byte, error) {
	return f(ctx, mac)
}

// Token errors. The HTTP side answers all of them with the same 403 so a
// prober learns nothing about which tokens exist.
var (
	ErrTokenUnknown  = errors.New("config token unknown, expired or used up")
	ErrTokenMismatch = errors.New("config token presented by another machine")
)

// TokenOptions tune a ConfigTokens registry.
type TokenOptions struct {
	TTL  time.Duration    // how long a token is valid (default 15 min)
	Uses int              // how many fetches a token allows (default 1)
	Now  func() time.Time // clock, for tests (default time.Now)
}

// ConfigTokens is a registry of unguessable, expiring, limited-use URLs
// for machine configs (Talos talos.config=). Machine configs carry the
// cluster's keys: this endpoint is meant only for an isolated cart network,
// and is off unless Config.ConfigEndpoint is set.
//
// A token is 256 bits from crypto/rand, base64url-encoded; only its SHA-256
// is kept, so the registry cannot leak it. Each token is bound to one MAC:
// the fetch must carry ?mac= with that MAC (Talos expands ${mac} in
// talos.config=), and a fetch with another MAC burns the token.
type ConfigTokens struct {
	src  ConfigSource
	ttl  time.Duration
	uses int
	now  func() time.Time

	mu     sync.Mutex
	grants map[[sha256.Size]byte]*grant
}

type grant struct {
	mac     net.HardwareAddr
	expires time.Time
	left    int
}

// NewConfigTokens returns an empty registry whose configs come from src.
func NewConfigTokens(src ConfigSource, o TokenOptions) *ConfigTokens {
	if o.TTL <= 0 {
		o.TTL = 15 * time.Minute
	}
	if o.Uses <= 0 {
		o.Uses = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &ConfigTokens{src: src, ttl: o.TTL, uses: o.Uses, now: o.Now, grants: map[[sha256.Size]byte]*grant{}}
}

// Issue creates a token for mac. Put it in a URL with ConfigURL; never log it.
func (c *ConfigTokens) Issue(mac net.HardwareAddr) (string, error) {
	if len(mac) == 0 {
		return "", errors.New("issue config token: no MAC address")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("issue config token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked()
	c.grants[sha256.Sum256([]byte(tok))] = &grant{mac: append(net.HardwareAddr(nil), mac...), expires: c.now().Add(c.ttl), left: c.uses}
	return tok, nil
}

// Revoke drops every token issued for mac.
func (c *ConfigTokens) Revoke(mac net.HardwareAddr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, g := range c.grants {
		if bytes.Equal(g.mac, mac) {
			delete(c.grants, k)
		}
	}
}

// Len reports how many tokens are live.
func (c *ConfigTokens) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked()
	return len(c.grants)
}

func (c *ConfigTokens) pruneLocked() {
	now := c.now()
	for k, g := range c.grants {
		if g.left <= 0 || !now.Before(g.expires) {
			delete(c.grants, k)
		}
	}
}

// Redeem checks tok for mac, uses it up once and returns the config.
func (c *ConfigTokens) Redeem(ctx context.Context, tok string, mac net.HardwareAddr) ([]byte, error) {
	key := sha256.Sum256([]byte(tok))
	c.mu.Lock()
	g := c.grants[key]
	switch {
	case g == nil || g.left <= 0 || !c.now().Before(g.expires):
		delete(c.grants, key)
		c.mu.Unlock()
		return nil, ErrTokenUnknown
	case !bytes.Equal(g.mac, mac):
		// Someone else holds this machine's token: burn it.
		delete(c.grants, key)
		c.mu.Unlock()
		return nil, ErrTokenMismatch
	}
	g.left--
	if g.left <= 0 {
		delete(c.grants, key)
	}
	bound := g.mac
	c.mu.Unlock()
	body, err := c.src.Config(ctx, bound)
	if err != nil {
		return nil, fmt.Errorf("get config for %s: %w", bound, err)
	}
	return body, nil
}

// ConfigURL is the talos.config= URL for tok; ${mac} is replaced by
// ipxe.Render with the machine's MAC (and Talos would expand it too).
func ConfigURL(base, tok string) string {
	return strings.TrimRight(base, "/") + "/config/" + tok + "?mac=${mac}"
}

// redactedConfigPath is what logs and events show instead of the token.
const redactedConfigPath = "/config/<token>"

func (h *Handler) serveConfig(w http.ResponseWriter, r *http.Request) {
	if h.tokens == nil {
		http.NotFound(w, r)
		return
	}
	ip := clientIP(r)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	start := time.Now()
	tok := strings.TrimPrefix(r.URL.Path, "/config/")
	mac, err := net.ParseMAC(r.URL.Query().Get("mac"))
	if err != nil {
		h.emit(netboot.Event{Kind: netboot.EventHTTPError, IP: ip, File: redactedConfigPath,
			Err: "a config fetch carried no MAC address; refused"})
		http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
		return
	}
	body, err := h.tokens.Redeem(r.Context(), tok, mac)
	if err != nil {
		why := "a config fetch was refused: the link is unknown, expired or already used"
		switch {
		case errors.Is(err, ErrTokenMismatch):
			why = "a config link was used by another machine than the one it was made for; the link is now void"
		case !errors.Is(err, ErrTokenUnknown):
			why = "the machine config could not be produced" // err may quote the config source; not shown
		}
		h.emit(netboot.Event{Kind: netboot.EventHTTPError, IP: ip, MAC: mac.String(), File: redactedConfigPath, Err: why})
		h.log.Warn("config fetch refused", "ip", ip, "mac", mac.String(), "reason", why)
		code := http.StatusForbidden
		if !errors.Is(err, ErrTokenUnknown) && !errors.Is(err, ErrTokenMismatch) {
			code = http.StatusInternalServerError
		}
		http.Error(w, http.StatusText(code), code)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-store")
	n, _ := w.Write(body)
	h.emit(netboot.Event{Kind: netboot.EventHTTPDone, IP: ip, MAC: mac.String(), File: redactedConfigPath, Bytes: int64(n), Duration: time.Since(start), Detail: "machine config"})
	h.log.Info("config served", "ip", ip, "mac", mac.String(), "bytes", n)
}
