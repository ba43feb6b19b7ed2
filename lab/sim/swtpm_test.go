package sim_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"onramp/lab/sim"
	"onramp/lab/sim/simtest"
	"onramp/talos/node"
)

// startSwtpm runs swtpm (the TPM the lab's QEMU guests get) on a Unix socket in a
// temporary directory and returns a transport to it.
func startSwtpm(t *testing.T) transport.TPM {
	t.Helper()

	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skip("swtpm not installed (Debian package swtpm): cannot test against a real software TPM")
	}

	dir := t.TempDir()
	sock := filepath.Join(dir, "tpm.sock")

	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")

	var stderr bytes.Buffer

	cmd.Stderr = &stderr

	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}

	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck
		cmd.Wait()         //nolint:errcheck
	})

	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}

		time.Sleep(20 * time.Millisecond)
	}

	tpm, err := linuxudstpm.Open(sock)
	if err != nil {
		t.Fatalf("open swtpm socket: %v (swtpm: %s)", err, stderr.String())
	}

	t.Cleanup(func() { tpm.Close() })

	return tpm
}

// TestSwtpmSealAndVerify runs the whole install against swtpm instead of the
// in-process simulator: sealing, unsealing at the installed boot, verification.
func TestSwtpmSealAndVerify(t *testing.T) {
	t.Parallel()

	tpm := startSwtpm(t)

	secret := []byte("0123456789abcdef0123456789abcdef")

	sk, err := sim.SealForTest(tpm, secret, []int{7})
	if err != nil {
		t.Fatalf("seal with swtpm: %v", err)
	}

	got, err := sim.UnsealForTest(tpm, sk)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unseal with swtpm = %q, %v", got, err)
	}

	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)

	cfg := simtest.Config(t, t.TempDir(), sim.Firmware{UEFI: true, SecureBoot: true}, tpm)
	cfg.InstallDelay = 100 * time.Millisecond

	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	simtest.Start(t, s)

	m, err := node.Maintenance(t.Context(), s.Addr().String(), node.WithPinnedFingerprint(s.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if err := m.Apply(t.Context(), site.ControlPlane); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	n, err := node.Installed(t.Context(), s.Addr().String(), site.Talosconfig)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	if err := n.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}

	ev, err := node.Verify(t.Context(), n, node.Expected{UKISigningKeyFingerprint: "uki-fpr-site", PCRSigningKeyFingerprint: "pcr-fpr-site"})
	if err != nil || !ev.Verified {
		t.Fatalf("Verify with swtpm = %+v, %v", ev, err)
	}

	sum := sha256.Sum256([]byte("dbx update"))
	if _, err := (tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(7), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: sum[:]}}},
	}).Execute(tpm); err != nil {
		t.Fatalf("extend PCR 7: %v", err)
	}

	if _, err := sim.UnsealForTest(tpm, sk); err == nil {
		t.Fatal("swtpm unsealed after a PCR 7 change")
	}
}
