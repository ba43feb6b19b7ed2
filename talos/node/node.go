// Package node is Onramp's client for Talos nodes, built on the Talos machinery
// client (github.com/siderolabs/talos/pkg/machinery/client): no talosctl.
//
// A node first runs in maintenance mode: the Talos API on TCP 50000 over TLS with a
// self-signed certificate and no client authentication. The only protection is the
// certificate's fingerprint, which Talos prints on the node's console: Maintenance
// captures the SPKI SHA-256 fingerprint (the value talosctl --cert-fingerprint pins)
// and, with WithPinnedFingerprint, refuses any other. The config, which carries the
// cluster's keys, only ever travels over that TLS channel.
//
// After install the node serves the API with mutual TLS: Installed authenticates with
// the site's talosconfig (client certificate signed by the machine CA, role os:admin).
//
// Resources are read through COSI (github.com/cosi-project/runtime State API):
// hardware.SystemInformation, block.Disk, network.LinkStatus, runtime.SecurityState,
// hardware.PCRStatus (TPM presence) and block.VolumeStatus.
//
// Every call takes a context, runs with a per-attempt timeout, and retries transient
// failures (gRPC Unavailable, DeadlineExceeded, ResourceExhausted, Aborted) a bounded
// number of times with exponential backoff, reporting each step to an optional
// progress callback.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Progress is one step of a long call, for the UI's timeline.
type Progress struct {
	Node    string
	Step    string // connect, version, apply, wait-ready, bootstrap, wait-healthy, kubeconfig, ...
	Message string
	Attempt int
	Err     error
}

// Option configures a client.
type Option func(*options)

type options struct {
	pinned      string
	progress    func(Progress)
	logger      *slog.Logger
	callTimeout time.Duration
	attempts    int
	backoff     time.Duration
	maxBackoff  time.Duration
	waitTimeout time.Duration
	dial        func(ctx context.Context, addr string) (net.Conn, error)
}

func newOptions(opts []Option) *options {
	o := &options{
		callTimeout: 15 * time.Second,
		attempts:    5,
		backoff:     250 * time.Millisecond,
		maxBackoff:  5 * time.Second,
		waitTimeout: 20 * time.Minute,
		logger:      slog.New(slog.DiscardHandler),
		progress:    func(Progress) {},
	}

	for _, opt := range opts {
		opt(o)
	}

	if o.dial == nil {
		var d net.Dialer

		o.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}

	o.logger = o.logger.With("component", "talos/node")

	return o
}

// WithPinnedFingerprint makes Maintenance refuse a node whose certificate's SPKI
// SHA-256 fingerprint differs from fp (base64 as Talos prints it, or hex).
func WithPinnedFingerprint(fp string) Option { return func(o *options) { o.pinned = fp } }

// WithProgress reports every step and retry to fn.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) {
		if fn != nil {
			o.progress = fn
		}
	}
}

// WithLogger sets the logger (a component field is added).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithRetry sets the attempts per call (≥1) and the first backoff delay.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(o *options) {
		o.attempts, o.backoff = max(attempts, 1), backoff
	}
}

// WithCallTimeout sets the timeout of one attempt of one call.
func WithCallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// WithWaitTimeout bounds WaitReady and WaitHealthy (default 20 minutes).
func WithWaitTimeout(d time.Duration) Option { return func(o *options) { o.waitTimeout = d } }

// WithDialer makes every TCP connection to the node with dial, e.g. to reach nodes
// on a network only a Linux network namespace sees (the virtual lab): dial creates
// the socket inside it. addr is host:port. Default: a plain net.Dialer.
func WithDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(o *options) {
		if dial != nil {
			o.dial = dial
		}
	}
}

// dialOptions keep gRPC's reconnect backoff short: a rebooting node comes back within
// seconds and gRPC's default would wait up to two minutes. Connections go through
// the configured dialer.
func (o *options) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithContextDialer(o.dial),
	}
}

// retryable says whether err is worth another attempt.
func retryable(err error) bool {
	var ue *unavailableError
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ue) {
		return true
	}

	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}

	return false
}

// call runs fn with a per-attempt timeout, retrying transient failures with
// exponential backoff.
func (o *options) call(ctx context.Context, node, step string, fn func(context.Context) error) error {
	delay := o.backoff

	var err error

	for attempt := 1; attempt <= o.attempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, o.callTimeout)
		err = fn(actx)
		cancel()

		if err == nil {
			return nil
		}

		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", step, node, ctx.Err())
		}

		if !retryable(err) || attempt == o.attempts {
			break
		}

		o.progress(Progress{Node: node, Step: step, Message: "retrying", Attempt: attempt, Err: err})
		o.logger.Debug("retry", "node", node, "step", step, "attempt", attempt, "err", err)

		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", step, node, ctx.Err())
		case <-time.After(delay):
		}

		delay = min(delay*2, o.maxBackoff)
	}

	return fmt.Errorf("%s %s: %w", step, node, err)
}

// poll calls check until it reports done, for at most waitTimeout; errors from check
// are progress, not failure, unless they are permanent.
func (o *options) poll(ctx context.Context, node, step string, check func(context.Context) (done bool, msg string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, o.waitTimeout)
	defer cancel()

	delay := o.backoff

	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, o.callTimeout)
		done, msg, err := check(actx)
		acancel()

		if done {
			o.progress(Progress{Node: node, Step: step, Message: msg, Attempt: attempt})

			return nil
		}

		if err != nil && !retryable(err) && ctx.Err() == nil {
			return fmt.Errorf("%s %s: %w", step, node, err)
		}

		o.progress(Progress{Node: node, Step: step, Message: msg, Attempt: attempt, Err: err})

		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New(msg)
			}

			return fmt.Errorf("%s %s: %w (last: %w)", step, node, ctx.Err(), err)
		case <-time.After(delay):
		}

		delay = min(delay*2, o.maxBackoff)
	}
}
