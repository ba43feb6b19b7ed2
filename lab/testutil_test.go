package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"onramp/lab/kit"
)

// needRoot skips tests that create namespaces or run QEMU without root or tools.
func needRoot(t *testing.T, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, taps)")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed: %v", b, err)
		}
	}
}

func needQEMU(t *testing.T) {
	t.Helper()
	for _, b := range []string{"qemu-system-x86_64", "swtpm", "apt-get", "dpkg", "objcopy", "sbsign", "openssl"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (packages qemu-system-x86 swtpm sbsigntool binutils openssl): %v", b, err)
		}
	}
	for _, f := range []string{OVMFCode, OVMFCodeSecBoot, OVMFVarsMS, OVMFVarsSite, "/bin/busybox", "/usr/lib/ipxe/ipxe.efi"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (packages ovmf busybox-static ipxe): %v", f, err)
		}
	}
}

// testCacheDir is the shared download/build cache: $ONRAMP_LAB_CACHE or
// build/lab-cache at the repository root.
func testCacheDir() string {
	if d := os.Getenv("ONRAMP_LAB_CACHE"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "build", "lab-cache")
}

var (
	kitOnce   sync.Once
	kitAssets *kit.Assets
	kitErr    error
)

func guestKit(t *testing.T) *kit.Assets {
	t.Helper()
	kitOnce.Do(func() {
		kitAssets, kitErr = kit.Prepare(context.Background(), kit.Options{CacheDir: testCacheDir()})
	})
	if kitErr != nil {
		t.Fatalf("prepare guest kit: %v", kitErr)
	}
	return kitAssets
}

// nsName returns a namespace name with this engineer's test prefix.
func nsName() string { return fmt.Sprintf("obl-t%06x", rand.IntN(1<<24)) }
