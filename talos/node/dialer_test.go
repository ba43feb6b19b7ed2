package node_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"onramp/lab/sim"
	"onramp/lab/sim/simtest"
	"onramp/talos/node"
)

// countingDialer dials the real address behind a name only it knows, the way a
// network-namespace dialer reaches addresses the host cannot.
type countingDialer struct {
	alias, real string
	calls       atomic.Int32
}

func (d *countingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.calls.Add(1)

	if addr != d.alias {
		return nil, errors.New("dialer: unexpected address " + addr)
	}

	var nd net.Dialer

	return nd.DialContext(ctx, "tcp", d.real)
}

// Every connection, the fingerprint probe, maintenance gRPC and installed mTLS,
// goes through WithDialer.
func TestWithDialerCarriesEveryConnection(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)
	s := startNode(t, t.TempDir(), secureBootOn, tpm)

	// Nothing listens on 127.0.0.1:1: only the dialer reaches the node behind it (the
	// host must stay 127.0.0.1, the address in the installed node's certificate).
	d := &countingDialer{alias: "127.0.0.1:1", real: s.Addr().String()}
	opts := append(fast(), node.WithDialer(d.dial))

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{name: "maintenance", run: func(t *testing.T) {
			m, err := node.Maintenance(t.Context(), "127.0.0.1:1", append(opts, node.WithPinnedFingerprint(s.Fingerprint()))...)
			if err != nil {
				t.Fatalf("Maintenance through dialer: %v", err)
			}
			defer m.Close()

			if _, err := m.Version(t.Context()); err != nil {
				t.Fatalf("Version through dialer: %v", err)
			}

			if err := m.Apply(t.Context(), site.ControlPlane); err != nil {
				t.Fatalf("Apply through dialer: %v", err)
			}
		}},
		{name: "installed", run: func(t *testing.T) {
			n, err := node.Installed(t.Context(), "127.0.0.1:1", site.Talosconfig, opts...)
			if err != nil {
				t.Fatalf("Installed through dialer: %v", err)
			}
			defer n.Close()

			if err := n.WaitReady(t.Context()); err != nil {
				t.Fatalf("WaitReady through dialer: %v", err)
			}

			simtest.WaitStage(t, s, sim.StageRunning, time.Second)
		}},
	}

	for _, tt := range tests {
		before := d.calls.Load()

		t.Run(tt.name, tt.run)

		if d.calls.Load() == before {
			t.Errorf("%s: the dialer was not used", tt.name)
		}
	}

	// Without the dialer the alias is unreachable: proof the calls above used it.
	if _, err := node.Maintenance(t.Context(), "127.0.0.1:1", node.WithRetry(1, 0), node.WithCallTimeout(300*time.Millisecond)); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Maintenance without dialer = %v, want a connect error", err)
	}
}
