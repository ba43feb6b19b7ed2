package lab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// waitFor polls the serial log until pred holds or the timeout passes.
func waitFor(t *testing.T, ctx context.Context, path string, timeout time.Duration, pred func(Observation) bool) Observation {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var o Observation
	for time.Now().Before(deadline) {
		o = ObserveFile(path)
		if pred(o) {
			return o
		}
		select {
		case <-ctx.Done():
			return o
		case <-time.After(500 * time.Millisecond):
		}
	}
	return o
}

// TestDirectBoot boots the guest kit with QEMU -kernel/-initrd (no netboot)
// under each firmware and checks what the guest's init reports from inside:
// SMBIOS identity, firmware type, SecureBoot and setup mode as the firmware
// sets them in EFI variables, and the swtpm TPM.
func TestDirectBoot(t *testing.T) {
	t.Parallel()
	needRoot(t)
	needQEMU(t)
	a := guestKit(t)
	tests := []struct {
		name string
		m    Machine
		uki  bool // boot the signed UKI instead of kernel+initrd
		want map[string]string
	}{
		{"bios", NewMachine(1, FirmwareBIOS, "", false, 0), false,
			map[string]string{"firmware": "bios", "secureboot": "none", "setupmode": "none", "tpm": "0", "serial": "LAB-0001", "ip": "10.0.2.15"}},
		{"uefi-tpm", NewMachine(2, FirmwareUEFI, "", true, 64<<20), false,
			map[string]string{"firmware": "uefi", "secureboot": "0", "setupmode": "1", "tpm": "1", "serial": "LAB-0002", "ip": "10.0.2.15"}},
		{"secureboot-vendor-keys", NewMachine(3, FirmwareUEFISecureBoot, KeysVendor, false, 0), false,
			map[string]string{"firmware": "uefi", "secureboot": "1", "setupmode": "0", "tpm": "0", "serial": "LAB-0003", "ip": "10.0.2.15"}},
		{"secureboot-site-keys-uki", NewMachine(4, FirmwareUEFISecureBoot, KeysSite, true, 0), true,
			map[string]string{"firmware": "uefi", "secureboot": "1", "setupmode": "0", "tpm": "1", "serial": "LAB-0004", "ip": "10.0.2.15"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
			defer cancel()
			d := &DirectBoot{Kernel: a.Vmlinuz, Initrd: a.Initramfs, Cmdline: "console=ttyS0,115200 panic=-1 loglevel=4"}
			if tc.uki {
				// OVMF loads the PE image from fw_cfg and verifies it against
				// db like any other image; the UKI carries its own initrd.
				d = &DirectBoot{Kernel: a.UKISigned}
			}
			vm := &VM{Machine: tc.m, Dir: filepath.Join(t.TempDir(), tc.m.Name), UserNet: true, Direct: d}
			done := make(chan error, 1)
			start := time.Now()
			waitCtx, stopWait := context.WithCancel(ctx)
			defer stopWait()
			go func() {
				err := vm.Run(ctx)
				stopWait() // QEMU exited on its own: stop waiting for the marker
				done <- err
			}()
			o := waitFor(t, waitCtx, vm.SerialLog(), 120*time.Second, func(o Observation) bool { return o.State != StateBooting })
			took := time.Since(start)
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("vm.Run: %v", err)
			}
			if o.State != StateBooted {
				log, _ := os.ReadFile(vm.SerialLog())
				t.Fatalf("state %q after %s, want booted; serial log tail:\n%s", o, took, tail(string(log), 3000))
			}
			t.Logf("%s: marker after %s", tc.name, took.Round(100*time.Millisecond))
			got := map[string]string{}
			for k := range tc.want {
				got[k] = o.Info[k]
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("guest report (-want +got):\n%s", diff)
			}
			if _, err := os.Stat(vm.tpmDir()); tc.m.TPM && err != nil {
				t.Errorf("tpm state dir: %v", err)
			}
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.ToValidUTF8(s, "?")
}
