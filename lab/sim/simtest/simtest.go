// Package simtest helps tests run the Talos node simulator in-process: Talos configs
// generated with machinery (secrets bundle, VolumeConfig STATE and EPHEMERAL with a
// TPM key), fake hardware, and a started node cleaned up with the test.
//
// It does not open a TPM: tests pass one (the go-tpm-tools simulator needs cgo, so it
// is imported by _test files only).
package simtest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/go-pointer"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	blockcfg "github.com/siderolabs/talos/pkg/machinery/config/types/block"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"

	"onramp/lab/sim"
)

// Site is a generated cluster: node configs and the talosconfig.
type Site struct {
	ControlPlane []byte
	Worker       []byte
	Talosconfig  []byte
	// OSCA is the machine (OS) CA, for tests that mint their own client certificates.
	OSCA *x509.PEMEncodedCertificateAndKey
}

// Encryption selects the disk encryption written into the configs.
type Encryption int

// Encryption choices.
const (
	// TPMWithSecureBootCheck: STATE and EPHEMERAL luks2, TPM key, PCR 7,
	// checkSecurebootStatusOnEnroll (Onramp's default policy).
	TPMWithSecureBootCheck Encryption = iota
	// TPMNoSecureBootCheck: the same without the SecureBoot check.
	TPMNoSecureBootCheck
	// NoEncryption: no VolumeConfig encryption.
	NoEncryption
)

var (
	bundleOnce sync.Once
	bundle     *secrets.Bundle
	bundleErr  error
)

// GenerateSite builds configs for cluster "sim" with endpoint https://127.0.0.1:6443.
// The secrets bundle is shared by all calls of a test binary (generation is slow).
func GenerateSite(t testing.TB, enc Encryption) Site {
	t.Helper()

	bundleOnce.Do(func() { bundle, bundleErr = secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_14) })

	if bundleErr != nil {
		t.Fatalf("secrets bundle: %v", bundleErr)
	}

	in, err := generate.NewInput("sim", "https://127.0.0.1:6443", constants.DefaultKubernetesVersion,
		generate.WithVersionContract(config.TalosVersion1_14),
		generate.WithSecretsBundle(bundle),
		generate.WithEndpointList([]string{"127.0.0.1"}),
		generate.WithInstallDisk("/dev/vda"),
	)
	if err != nil {
		t.Fatalf("generate input: %v", err)
	}

	site := Site{ControlPlane: nodeConfig(t, in, machine.TypeControlPlane, enc), Worker: nodeConfig(t, in, machine.TypeWorker, enc), OSCA: bundle.Certs.OS}

	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatalf("talosconfig: %v", err)
	}

	if site.Talosconfig, err = tc.Bytes(); err != nil {
		t.Fatalf("encode talosconfig: %v", err)
	}

	return site
}

func tpmEncryption(check bool) blockcfg.EncryptionSpec {
	tpm := &blockcfg.EncryptionKeyTPM{TPMOptions: &blockcfg.EncryptionKeyTPMOptions{PCRs: []int{7}}}
	if check {
		tpm.TPMCheckSecurebootStatusOnEnroll = pointer.To(true)
	}

	return blockcfg.EncryptionSpec{
		EncryptionProvider: block.EncryptionProviderLUKS2,
		EncryptionKeys:     []blockcfg.EncryptionKey{{KeySlot: 0, KeyTPM: tpm}},
	}
}

func nodeConfig(t testing.TB, in *generate.Input, typ machine.Type, enc Encryption) []byte {
	t.Helper()

	cfg, err := in.Config(typ)
	if err != nil {
		t.Fatalf("generate %s config: %v", typ, err)
	}

	docs := cfg.Documents()

	if enc != NoEncryption {
		spec := tpmEncryption(enc == TPMWithSecureBootCheck)
		haveEphemeral := false

		for _, d := range docs {
			if vc, ok := d.(*blockcfg.VolumeConfigV1Alpha1); ok && vc.MetaName == constants.EphemeralPartitionLabel {
				vc.EncryptionSpec = spec
				haveEphemeral = true
			}
		}

		if !haveEphemeral {
			eph := blockcfg.NewVolumeConfigV1Alpha1()
			eph.MetaName = constants.EphemeralPartitionLabel
			eph.EncryptionSpec = spec
			docs = append(docs, eph)
		}

		st := blockcfg.NewVolumeConfigV1Alpha1()
		st.MetaName = constants.StatePartitionLabel
		st.EncryptionSpec = spec
		docs = append(docs, st)
	}

	c, err := container.New(docs...)
	if err != nil {
		t.Fatalf("rebuild %s config: %v", typ, err)
	}

	b, err := c.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		t.Fatalf("encode %s config: %v", typ, err)
	}

	return b
}

// Hardware is the fake machine the simulator reports.
var Hardware = sim.Hardware{Manufacturer: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Serial: "ONRAMP-SIM-0001", UUID: "2b0f4a7e-9d1c-4f55-8a43-3c7b2b1e9a10"}

// Disks are the fake machine's disks.
var Disks = []sim.Disk{{Name: "vda", Size: 8 << 30, Serial: "disk-0001", Transport: "virtio"}, {Name: "sr0", Size: 0, CDROM: true, Model: "QEMU DVD-ROM", Transport: "scsi"}}

// Config is a simulator config on 127.0.0.1:0 with fake hardware, the given firmware
// and TPM (nil: none), and state in dir.
func Config(t testing.TB, dir string, fw sim.Firmware, tpm transport.TPM) sim.Config {
	return sim.Config{
		ListenAddr: "127.0.0.1:0",
		TrustdAddr: "127.0.0.1:0",
		StateDir:   dir,
		Hardware:   func() (sim.Hardware, error) { return Hardware, nil },
		Disks:      func() ([]sim.Disk, error) { return Disks, nil },
		Links: func() ([]sim.Link, error) {
			return []sim.Link{{Name: "eth0", Index: 2, MAC: net.HardwareAddr{0x52, 0x54, 0, 0x77, 0, 0x10}, MTU: 1500, Up: true}}, nil
		},
		Firmware:                 func() (sim.Firmware, error) { return fw, nil },
		TPM:                      tpm,
		UKISigningKeyFingerprint: "uki-fpr-site",
		PCRSigningKeyFingerprint: "pcr-fpr-site",
		BootedWithUKI:            fw.UEFI,
		CertIPs:                  func() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1)} },
		Logger:                   slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))

	return len(p), nil
}

// Start runs s until the test ends and waits for its API to listen. Cleanup cancels
// Run and fails the test if Run returned an error.
func Start(t testing.TB, s *sim.Sim) {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	go func() { done <- s.Run(ctx) }()

	t.Cleanup(func() {
		cancel()

		if err := <-done; err != nil {
			t.Errorf("simulator Run: %v", err)
		}
	})

	select {
	case <-s.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("simulator exited before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("simulator did not start listening within 10s")
	}
}

// WaitStage waits until s reaches stage.
func WaitStage(t testing.TB, s *sim.Sim, stage sim.Stage, timeout time.Duration) {
	t.Helper()

	deadline := time.Now().Add(timeout)

	for s.Stage() != stage {
		if time.Now().After(deadline) {
			t.Fatalf("simulator stage %s, want %s after %s", s.Stage(), stage, timeout)
		}

		time.Sleep(20 * time.Millisecond)
	}
}
