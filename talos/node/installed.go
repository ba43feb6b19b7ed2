package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// InstalledClient talks to an installed node with mutual TLS.
type InstalledClient struct {
	addr string
	c    *client.Client
	o    *options
}

// Installed prepares an mTLS client for the node at addr (host or host:port) with the
// site's talosconfig (its current context's CA, client certificate and key). The
// talosconfig's own endpoints are ignored: addr is the node. No connection is made
// until the first call.
func Installed(ctx context.Context, addr string, talosconfig []byte, opts ...Option) (*InstalledClient, error) {
	o := newOptions(opts)
	addr = withPort(addr)

	cfg, err := clientconfig.FromBytes(talosconfig)
	if err != nil {
		return nil, fmt.Errorf("parse talosconfig: %w", err)
	}

	c, err := client.New(ctx, client.WithConfig(cfg), client.WithEndpoints(addr), client.WithGRPCDialOptions(o.dialOptions()...))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}

	return &InstalledClient{addr: addr, c: c, o: o}, nil
}

// Close closes the connection.
func (n *InstalledClient) Close() error { return n.c.Close() }

// Addr is the node's API address.
func (n *InstalledClient) Addr() string { return n.addr }

// Version reads the node's Talos version over mTLS.
func (n *InstalledClient) Version(ctx context.Context) (VersionInfo, error) {
	return version(ctx, n.o, n.c, n.addr)
}

// WaitReady waits until the node answers over mTLS: it covers the install and the
// reboot(s) after an apply, when the API is down or still the maintenance one.
func (n *InstalledClient) WaitReady(ctx context.Context) error {
	return n.o.poll(ctx, n.addr, "wait-ready", func(ctx context.Context) (bool, string, error) {
		resp, err := n.c.Version(ctx)
		if err != nil {
			// down, rebooting, or still the maintenance API (its certificate does not
			// chain to the machine CA): all mean "not yet"
			return false, "waiting for the installed node's API", asUnavailable(err)
		}

		tag := ""
		if len(resp.GetMessages()) > 0 {
			tag = resp.GetMessages()[0].GetVersion().GetTag()
		}

		return true, "installed node answers over mTLS, Talos " + tag, nil
	})
}

// asUnavailable turns TLS handshake failures during a reboot into retryable errors.
func asUnavailable(err error) error {
	if status.Code(err) == codes.Unavailable || strings.Contains(err.Error(), "handshake") || strings.Contains(err.Error(), "certificate") {
		return errUnavailable(err)
	}

	return err
}

// BootstrapResult says what Bootstrap did.
type BootstrapResult struct {
	// AlreadyBootstrapped: the node answered AlreadyExists (etcd has data), so an
	// earlier call (maybe a retried one) bootstrapped it.
	AlreadyBootstrapped bool   `json:"alreadyBootstrapped"`
	Message             string `json:"message"`
}

// Bootstrap bootstraps etcd on this control-plane node. Call it on exactly one node
// of a cluster; calling it again is safe: AlreadyExists counts as done and is reported.
func (n *InstalledClient) Bootstrap(ctx context.Context) (BootstrapResult, error) {
	var res BootstrapResult

	err := n.o.call(ctx, n.addr, "bootstrap", func(ctx context.Context) error {
		err := n.c.Bootstrap(ctx, &machine.BootstrapRequest{})

		switch {
		case err == nil:
			res = BootstrapResult{Message: "etcd bootstrapped"}

			return nil
		case status.Code(err) == codes.AlreadyExists:
			res = BootstrapResult{AlreadyBootstrapped: true, Message: "etcd was already bootstrapped on this node (" + status.Convert(err).Message() + "): treated as done"}

			return nil
		default:
			return err
		}
	})
	if err != nil {
		return res, err
	}

	n.o.progress(Progress{Node: n.addr, Step: "bootstrap", Message: res.Message})

	return res, nil
}

// Service is a Talos service's state.
type Service struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Healthy bool   `json:"healthy"`
	Message string `json:"message,omitempty"`
}

// Services lists the node's services (MachineService.ServiceList).
func (n *InstalledClient) Services(ctx context.Context) ([]Service, error) {
	var out []Service

	err := n.o.call(ctx, n.addr, "services", func(ctx context.Context) error {
		resp, err := n.c.ServiceList(ctx)
		if err != nil {
			return err
		}

		out = out[:0]

		for _, m := range resp.GetMessages() {
			for _, s := range m.GetServices() {
				out = append(out, Service{ID: s.GetId(), State: s.GetState(), Healthy: s.GetHealth().GetHealthy(), Message: s.GetHealth().GetLastMessage()})
			}
		}

		return nil
	})

	return out, err
}

// WaitHealthy waits until etcd (on a control-plane node) and kubelet run and are
// healthy.
func (n *InstalledClient) WaitHealthy(ctx context.Context) error {
	return n.o.poll(ctx, n.addr, "wait-healthy", func(ctx context.Context) (bool, string, error) {
		resp, err := n.c.ServiceList(ctx)
		if err != nil {
			return false, "waiting for the service list", asUnavailable(err)
		}

		svcs := map[string]*machine.ServiceInfo{}

		for _, m := range resp.GetMessages() {
			for _, s := range m.GetServices() {
				svcs[s.GetId()] = s
			}
		}

		want := []string{"kubelet"}
		if _, ok := svcs["etcd"]; ok {
			want = []string{"etcd", "kubelet"}
		}

		var waiting []string

		for _, id := range want {
			s, ok := svcs[id]

			switch {
			case !ok:
				waiting = append(waiting, id+" missing")
			case s.GetState() == "Failed":
				return false, id + " failed", fmt.Errorf("service %s failed: %s", id, s.GetHealth().GetLastMessage())
			case s.GetState() != "Running" || !s.GetHealth().GetHealthy():
				waiting = append(waiting, fmt.Sprintf("%s %s (%s)", id, s.GetState(), s.GetHealth().GetLastMessage()))
			}
		}

		if len(waiting) > 0 {
			return false, "waiting for " + strings.Join(waiting, ", "), nil
		}

		return true, strings.Join(want, " and ") + " healthy", nil
	})
}

// Kubeconfig fetches the admin kubeconfig. It is a secret: never log or store it in
// plaintext.
func (n *InstalledClient) Kubeconfig(ctx context.Context) ([]byte, error) {
	var kc []byte

	err := n.o.call(ctx, n.addr, "kubeconfig", func(ctx context.Context) (err error) {
		kc, err = n.c.Kubeconfig(ctx)

		return err
	})
	if err != nil {
		return nil, err
	}

	if len(kc) == 0 {
		return nil, errors.New("fetch kubeconfig: empty")
	}

	n.o.progress(Progress{Node: n.addr, Step: "kubeconfig", Message: "kubeconfig received"})

	return kc, nil
}

// Volumes reads the system volumes' status.
func (n *InstalledClient) Volumes(ctx context.Context) ([]Volume, error) {
	var vols []Volume

	err := n.o.call(ctx, n.addr, "volumes", func(ctx context.Context) (err error) {
		vols, err = readVolumes(ctx, n.c.COSI)

		return err
	})

	return vols, err
}

// Security reads SecureBoot state, signing-key fingerprints and TPM presence.
func (n *InstalledClient) Security(ctx context.Context) (Security, error) {
	var sec Security

	err := n.o.call(ctx, n.addr, "security", func(ctx context.Context) (err error) {
		sec, err = readSecurity(ctx, n.c.COSI)

		return err
	})

	return sec, err
}
