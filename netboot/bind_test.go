package netboot

import (
	"context"
	"net"
	"testing"
	"time"
)

// The kernel drops connections from outside the on-link network: a TCP
// client from 127.0.0.1 reaches a listener filtered to 127.0.0.0/8 and
// gets no answer at all (not even a refusal) from one filtered to 10.0.0.0/8.
func TestOnLinkListenConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		onLink string
		reach  bool
	}{{"127.0.0.0/8", true}, {"10.0.0.0/8", false}} {
		_, n, _ := net.ParseCIDR(tc.onLink)
		lc, err := OnLinkListenConfig(n)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		cancel()
		if tc.reach && err != nil {
			t.Errorf("%s: on-link client refused: %v", tc.onLink, err)
		}
		if !tc.reach {
			if err == nil {
				c.Close()
				t.Errorf("%s: off-link client connected", tc.onLink)
			} else if ctx.Err() == nil {
				t.Errorf("%s: want silence (timeout), got an answer: %v", tc.onLink, err)
			}
		}
		if c != nil {
			c.Close()
		}
		ln.Close()
	}
	if _, err := OnLinkListenConfig(&net.IPNet{IP: net.ParseIP("fd77::"), Mask: net.CIDRMask(64, 128)}); err == nil {
		t.Error("IPv6 network accepted; the filter reads IPv4 sources")
	}
}
