package lab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"onramp/lab/kit"
	"onramp/secureboot"
)

// TestSecureBootEnrollment is visit step 4 in the lab: a SecureBoot OVMF
// machine in setup mode (empty variable store) boots the enrollment image
// (the hybrid ISO attached as a virtio disk: its GPT ESP holds systemd-boot
// and loader/keys/auto/{db,KEK,PK}.auth); systemd-boot enrolls the site's
// keys and resets (QEMU runs with -no-reboot, so the reset ends the run).
// The variable store then holds exactly the site's PK, the site's KEK plus
// Microsoft's, the site's db plus Microsoft's. Booted again, the machine
// runs a UKI signed with the site's db key and its init reads SecureBoot=1,
// SetupMode=0 from efivars; a UKI signed with Debian's snakeoil key and an
// unsigned one are refused. Set ONRAMP_LAB_E2E=1.
func TestSecureBootEnrollment(t *testing.T) {
	if os.Getenv("ONRAMP_LAB_E2E") != "1" {
		t.Skip("set ONRAMP_LAB_E2E=1 to enroll site SecureBoot keys into an OVMF machine")
	}
	needRoot(t, "mkfs.vfat", "mcopy", "xorriso")
	needQEMU(t)
	a := guestKit(t)
	ctx := t.Context()
	cache := testCacheDir()
	work := t.TempDir()

	ks, err := secureboot.GenerateKeys("Lab Enrollment Site", secureboot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fp := ks.Fingerprints()
	enr, err := ks.Enrollment(secureboot.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sdboot, err := kit.FetchSystemdBoot(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	esp, iso := filepath.Join(work, "esp.img"), filepath.Join(work, "enroll.iso")
	if err := secureboot.BuildESP(ctx, enr, sdboot, esp); err != nil {
		t.Fatal(err)
	}
	if err := secureboot.BuildISO(ctx, esp, iso); err != nil {
		t.Fatal(err)
	}

	// The site's UKI: the lab kernel and initramfs, the simulator's
	// fingerprints on its command line, signed with the site's db key.
	// sbsign takes key files: this test key lives in the test's temporary
	// directory only (a site's key stays in the vault).
	stub, err := kit.FetchStub(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	uki, err := kit.BuildUKI(ctx, work, kit.UKISpec{Stub: stub, Kernel: a.Vmlinuz, Initrd: a.Initramfs,
		Cmdline: kit.DefaultCmdline + " onramp.sim.uki_fpr=" + fp.UKISigningKey + " onramp.sim.pcr_fpr=" + fp.PCRSigningKey})
	if err != nil {
		t.Fatal(err)
	}
	siteKey := kit.SigningKey{Key: filepath.Join(work, "db.key"), Cert: filepath.Join(work, "db.crt")}
	if err := os.WriteFile(siteKey.Key, ks.DB.PrivateKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(siteKey.Cert, ks.DB.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	siteUKI := filepath.Join(work, "uki.site.efi")
	if err := kit.Sign(ctx, siteKey, uki, siteUKI); err != nil {
		t.Fatal(err)
	}
	if err := kit.Verify(ctx, siteKey.Cert, siteUKI); err != nil {
		t.Fatal(err)
	}

	// Enrollment: boot the ISO as a disk; systemd-boot counts down 15 s,
	// enrolls and resets.
	m := NewMachine(41, FirmwareUEFISecureBoot, KeysSetup, false, 0)
	st, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}
	m.DiskBytes = st.Size()
	vm := &VM{Machine: m, Dir: filepath.Join(work, m.Name)}
	if err := os.MkdirAll(vm.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyTestFile(iso, vm.diskPath()); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 180*time.Second)
	start := time.Now()
	err = vm.Run(runCtx)
	took := time.Since(start)
	cancel()
	serial, _ := os.ReadFile(vm.SerialLog())
	if !errors.Is(err, ErrExited) {
		t.Fatalf("enrollment run: %v after %s, want QEMU to exit on systemd-boot's reset; serial tail:\n%s", err, took, tail(string(serial), 3000))
	}
	t.Logf("enrollment: firmware → systemd-boot → keys enrolled → reset in %s", took.Round(100*time.Millisecond))
	if !bytes.Contains(serial, []byte(`Enrolling secure boot keys from directory: \loader\keys\auto`)) {
		t.Errorf("systemd-boot did not say it enrolled loader/keys/auto; serial tail:\n%s", tail(string(serial), 3000))
	}

	// The variable store holds the site's keys (and Microsoft's).
	varsFD, err := os.ReadFile(vm.varsPath())
	if err != nil {
		t.Fatal(err)
	}
	vars, err := secureboot.ParseVarStore(varsFD)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, v := range []struct {
		name   string
		vendor secureboot.GUID
	}{{"PK", secureboot.GlobalVariable}, {"KEK", secureboot.GlobalVariable}, {"db", secureboot.ImageSecurityDatabase}} {
		variable := secureboot.FindVariable(vars, v.name, v.vendor)
		if variable == nil {
			t.Fatalf("no %s in the variable store after enrollment; serial tail:\n%s", v.name, tail(string(serial), 3000))
		}
		lists, err := secureboot.ParseSignatureLists(variable.Data)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := secureboot.Certificates(lists)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			name := secureboot.CertFingerprint(c.Raw)
			if strings.HasPrefix(c.Subject.CommonName, "Microsoft") {
				name = c.Subject.CommonName
			}
			got[v.name] = append(got[v.name], name)
		}
	}
	want := map[string][]string{
		"PK":  {fp.PK},
		"KEK": {fp.KEK, "Microsoft Corporation KEK CA 2011"},
		"db":  {fp.DB, "Microsoft Windows Production PCA 2011", "Microsoft Corporation UEFI CA 2011"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("enrolled keys (-want +got):\n%s", diff)
	}

	// Boots after enrollment, each from its own copy of the enrolled store.
	tests := []struct {
		name   string
		image  string
		booted bool
	}{
		{"site-signed-uki", siteUKI, true},
		{"snakeoil-signed-uki", a.UKISigned, false},
		{"unsigned-uki", a.UKI, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bm := NewMachine(42+i, FirmwareUEFISecureBoot, KeysSetup, false, 0)
			bvm := &VM{Machine: bm, Dir: filepath.Join(work, bm.Name), UserNet: true, Direct: &DirectBoot{Kernel: tc.image}}
			if err := os.MkdirAll(bvm.Dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bvm.varsPath(), varsFD, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
			defer cancel()
			done := make(chan error, 1)
			waitCtx, stopWait := context.WithCancel(ctx)
			defer stopWait()
			start := time.Now()
			go func() {
				err := bvm.Run(ctx)
				stopWait()
				done <- err
			}()
			// A refused image never reaches the init: OVMF drops it
			// silently and goes on with its boot options, refusing the
			// (unsigned) built-in shell with "Security Violation" and
			// then trying PXE — by then the kernel was given up on.
			o := waitFor(t, waitCtx, bvm.SerialLog(), 120*time.Second, func(o Observation) bool {
				if o.State == StateBooted || o.State == StateFailed {
					return true
				}
				log, _ := os.ReadFile(bvm.SerialLog())
				return !tc.booted && bytes.Contains(log, []byte("Start PXE over IPv4"))
			})
			took := time.Since(start)
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrExited) {
				t.Errorf("vm.Run: %v", err)
			}
			log, _ := os.ReadFile(bvm.SerialLog())
			if !tc.booted {
				if o.State == StateBooted || bytes.Contains(log, []byte("ONRAMP-LAB: init started")) {
					t.Fatalf("%s booted under the site's keys (state %s after %s)", tc.name, o, took)
				}
				if !bytes.Contains(log, []byte("Security Violation")) || !bytes.Contains(log, []byte("Start PXE over IPv4")) {
					t.Fatalf("%s: firmware neither refused the shell nor moved on to PXE after %s; serial tail:\n%s", tc.name, took, tail(string(log), 3000))
				}
				t.Logf("%s: refused, firmware moved on to its next boot options after %s", tc.name, took.Round(100*time.Millisecond))
				return
			}
			if o.State != StateBooted {
				t.Fatalf("state %s after %s, want booted; serial tail:\n%s", o, took, tail(string(log), 3000))
			}
			t.Logf("%s: booted after %s", tc.name, took.Round(100*time.Millisecond))
			if diff := cmp.Diff(map[string]string{"secureboot": "1", "setupmode": "0", "firmware": "uefi"},
				map[string]string{"secureboot": o.Info["secureboot"], "setupmode": o.Info["setupmode"], "firmware": o.Info["firmware"]}); diff != "" {
				t.Errorf("guest's SecureBoot state (-want +got):\n%s", diff)
			}
		})
	}
}

func copyTestFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
