package node

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// FingerprintMismatchError is returned when the node's certificate is not the pinned one.
type FingerprintMismatchError struct {
	Shown, Expected string
}

func (e *FingerprintMismatchError) Error() string {
	return fmt.Sprintf("certificate fingerprint mismatch: node shows %s, expected %s", e.Shown, e.Expected)
}

// Fingerprint is the SPKI SHA-256 fingerprint of cert in Talos' notation (base64).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)

	return base64.StdEncoding.EncodeToString(sum[:])
}

// normalizeFingerprint accepts base64 (Talos' console) or hex with optional colons.
func normalizeFingerprint(fp string) (string, error) {
	fp = strings.TrimSpace(fp)

	if b, err := base64.StdEncoding.DecodeString(fp); err == nil && len(b) == sha256.Size {
		return fp, nil
	}

	if b, err := hex.DecodeString(strings.ReplaceAll(fp, ":", "")); err == nil && len(b) == sha256.Size {
		return base64.StdEncoding.EncodeToString(b), nil
	}

	return "", fmt.Errorf("parse certificate fingerprint %q: want 32 bytes of SHA-256 in base64 or hex", fp)
}

// withPort adds Talos' API port when addr has none.
func withPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}

	return net.JoinHostPort(strings.Trim(addr, "[]"), fmt.Sprint(constants.ApidPort))
}

// hostOf is addr's host, for TLS server names.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}

	return addr
}

// MaintenanceClient talks to a node in maintenance mode.
type MaintenanceClient struct {
	addr string
	fp   string
	c    *client.Client
	o    *options
}

// Maintenance connects to a maintenance-mode node at addr (host or host:port),
// captures its certificate fingerprint and, with WithPinnedFingerprint, refuses a
// different certificate. The gRPC connection then only accepts that same certificate.
func Maintenance(ctx context.Context, addr string, opts ...Option) (*MaintenanceClient, error) {
	o := newOptions(opts)
	addr = withPort(addr)

	pinned := ""
	if o.pinned != "" {
		var err error
		if pinned, err = normalizeFingerprint(o.pinned); err != nil {
			return nil, err
		}
	}

	var shown string

	err := o.call(ctx, addr, "connect", func(ctx context.Context) error {
		raw, err := o.dial(ctx, addr)
		if err != nil {
			return errUnavailable(err)
		}

		conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, ServerName: hostOf(addr)}) //nolint:gosec // maintenance mode: self-signed, pinned below
		defer conn.Close()                                                                                                     //nolint:errcheck

		if err := conn.HandshakeContext(ctx); err != nil {
			return errUnavailable(err)
		}

		certs := conn.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			return errors.New("node sent no certificate")
		}

		shown = Fingerprint(certs[0])

		return nil
	})
	if err != nil {
		return nil, err
	}

	if pinned != "" && shown != pinned {
		return nil, &FingerprintMismatchError{Shown: shown, Expected: pinned}
	}

	o.progress(Progress{Node: addr, Step: "connect", Message: "certificate fingerprint " + shown})

	want := shown

	tlsCfg := &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified by fingerprint in VerifyConnection
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("node sent no certificate")
			}

			if got := Fingerprint(cs.PeerCertificates[0]); got != want {
				return &FingerprintMismatchError{Shown: got, Expected: want}
			}

			return nil
		},
	}

	c, err := client.New(ctx, client.WithTLSConfig(tlsCfg), client.WithEndpoints(addr), client.WithGRPCDialOptions(o.dialOptions()...))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}

	return &MaintenanceClient{addr: addr, fp: shown, c: c, o: o}, nil
}

// Close closes the connection.
func (m *MaintenanceClient) Close() error { return m.c.Close() }

// Addr is the node's API address.
func (m *MaintenanceClient) Addr() string { return m.addr }

// Fingerprint is the SPKI SHA-256 fingerprint (base64) of the node's certificate, to
// compare with the node's console and record.
func (m *MaintenanceClient) Fingerprint() string { return m.fp }

// VersionInfo is what MachineService.Version reports.
type VersionInfo struct {
	Tag      string `json:"tag"`
	Platform string `json:"platform"`
	Arch     string `json:"arch"`
}

func version(ctx context.Context, o *options, c *client.Client, addr string) (VersionInfo, error) {
	var out VersionInfo

	err := o.call(ctx, addr, "version", func(ctx context.Context) error {
		resp, err := c.Version(ctx)
		if err != nil {
			return err
		}

		if len(resp.GetMessages()) == 0 {
			return errors.New("empty version response")
		}

		v := resp.GetMessages()[0]
		out = VersionInfo{Tag: v.GetVersion().GetTag(), Platform: v.GetPlatform().GetName(), Arch: v.GetVersion().GetArch()}

		return nil
	})

	return out, err
}

// Version reads the node's Talos version.
func (m *MaintenanceClient) Version(ctx context.Context) (VersionInfo, error) {
	return version(ctx, m.o, m.c, m.addr)
}

// Hardware reads SMBIOS system information.
func (m *MaintenanceClient) Hardware(ctx context.Context) (Hardware, error) {
	var hw Hardware

	err := m.o.call(ctx, m.addr, "hardware", func(ctx context.Context) (err error) {
		hw, err = readHardware(ctx, m.c.COSI)

		return err
	})

	return hw, err
}

// Disks lists the node's disks.
func (m *MaintenanceClient) Disks(ctx context.Context) ([]Disk, error) {
	var disks []Disk

	err := m.o.call(ctx, m.addr, "disks", func(ctx context.Context) (err error) {
		disks, err = readDisks(ctx, m.c.COSI)

		return err
	})

	return disks, err
}

// Links lists the node's network links.
func (m *MaintenanceClient) Links(ctx context.Context) ([]Link, error) {
	var links []Link

	err := m.o.call(ctx, m.addr, "links", func(ctx context.Context) (err error) {
		links, err = readLinks(ctx, m.c.COSI)

		return err
	})

	return links, err
}

// Security reads SecureBoot state, signing-key fingerprints and TPM presence.
func (m *MaintenanceClient) Security(ctx context.Context) (Security, error) {
	var sec Security

	err := m.o.call(ctx, m.addr, "security", func(ctx context.Context) (err error) {
		sec, err = readSecurity(ctx, m.c.COSI)

		return err
	})

	return sec, err
}

// Apply sends the machine config. It is not retried: the node may already be
// installing. The config is never logged.
func (m *MaintenanceClient) Apply(ctx context.Context, cfg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, max(m.o.callTimeout, time.Minute))
	defer cancel()

	m.o.progress(Progress{Node: m.addr, Step: "apply", Message: "applying configuration"})

	resp, err := m.c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg, Mode: machine.ApplyConfigurationRequest_AUTO})
	if err != nil {
		return fmt.Errorf("apply config to %s: %w", m.addr, err)
	}

	msg := "applied"
	if len(resp.GetMessages()) > 0 && resp.GetMessages()[0].GetModeDetails() != "" {
		msg = resp.GetMessages()[0].GetModeDetails()
	}

	m.o.progress(Progress{Node: m.addr, Step: "apply", Message: msg})

	return nil
}

// errUnavailable marks a dial failure as retryable.
func errUnavailable(err error) error { return &unavailableError{err} }

type unavailableError struct{ error }

func (e *unavailableError) Unwrap() error { return e.error }
