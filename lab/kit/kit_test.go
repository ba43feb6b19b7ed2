package kit

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testCacheDir is the shared download/build cache for tests: $ONRAMP_LAB_CACHE
// or build/lab-cache at the repository root.
func testCacheDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("ONRAMP_LAB_CACHE"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "build", "lab-cache")
}

func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (Debian packages: cpio sbsigntool binutils openssl apt dpkg): %v", b, err)
		}
	}
}

var (
	prepOnce   sync.Once
	prepAssets *Assets
	prepErr    error
)

// prepared builds the guest kit once per test binary.
func prepared(t *testing.T) *Assets {
	t.Helper()
	need(t, "apt-get", "dpkg", "objcopy", "sbsign", "sbverify", "openssl")
	for _, f := range []string{"/bin/busybox", "/usr/lib/ipxe/ipxe.efi", Snakeoil.Key} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (packages busybox-static, ipxe, ovmf): %v", f, err)
		}
	}
	prepOnce.Do(func() {
		prepAssets, prepErr = Prepare(context.Background(), Options{CacheDir: testCacheDir(t)})
	})
	if prepErr != nil {
		t.Fatalf("Prepare: %v", prepErr)
	}
	return prepAssets
}

func TestCPIOWriterAgainstCpio(t *testing.T) {
	t.Parallel()
	need(t, "cpio")
	type ent struct {
		kind, name, data string
	}
	tests := []struct {
		name    string
		entries []ent
	}{
		{"empty", nil},
		{"files and dirs", []ent{{"d", "bin", ""}, {"f", "bin/a", "hello"}, {"f", "bin/odd", "123"}, {"f", "init", "#!/bin/sh\n"}}},
		{"symlink and padding", []ent{{"f", "x", ""}, {"l", "y", "x"}, {"f", "abcd", strings.Repeat("z", 4097)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			c := NewCPIOWriter(&buf)
			for _, e := range tc.entries {
				var err error
				switch e.kind {
				case "d":
					err = c.Dir(e.name, 0o755)
				case "f":
					err = c.File(e.name, 0o644, []byte(e.data))
				case "l":
					err = c.Symlink(e.name, e.data)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), "cpio", "-t", "--quiet")
			cmd.Stdin = bytes.NewReader(buf.Bytes())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("cpio -t: %v", err)
			}
			got := strings.Fields(string(out))
			var want []string
			for _, e := range tc.entries {
				want = append(want, e.name)
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("cpio -t listing (-want +got):\n%s", diff)
			}
			dir := t.TempDir()
			cmd = exec.CommandContext(t.Context(), "cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
			cmd.Dir = dir
			cmd.Stdin = bytes.NewReader(buf.Bytes())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("cpio -i: %v: %s", err, out)
			}
			for _, e := range tc.entries {
				p := filepath.Join(dir, e.name)
				switch e.kind {
				case "f":
					b, err := os.ReadFile(p)
					if err != nil || string(b) != e.data {
						t.Errorf("extracted %s = %q, %v; want %q", e.name, b, err, e.data)
					}
				case "l":
					if tgt, err := os.Readlink(p); err != nil || tgt != e.data {
						t.Errorf("extracted link %s -> %q, %v; want %q", e.name, tgt, err, e.data)
					}
				}
			}
		})
	}
}

func TestCPIOWriterRejectsDuplicates(t *testing.T) {
	t.Parallel()
	c := NewCPIOWriter(&bytes.Buffer{})
	if err := c.File("a", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.File("a", 0o644, nil); err == nil {
		t.Fatal("second entry named a accepted")
	}
}

func TestInitramfsListing(t *testing.T) {
	t.Parallel()
	a := prepared(t)
	need(t, "cpio")
	f, err := os.Open(a.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "cpio", "-t", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		have[l] = true
	}
	want := []string{"init", "bin/busybox", "bin/sh", "dev/console", "etc/udhcpc.script", "lib/modules/load.order",
		"lib/modules/virtio_net.ko", "lib/modules/virtio_blk.ko", "lib/modules/efivarfs.ko", "lib/modules/virtio_pci.ko",
		"lib/modules/failover.ko", "lib/modules/net_failover.ko", "lib/modules/virtio-rng.ko", "lib/modules/vfat.ko", "lib/modules/fat.ko"}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("initramfs lacks %v; listing:\n%s", missing, out)
	}
}

func TestResolveModulesOrder(t *testing.T) {
	t.Parallel()
	a := prepared(t)
	mods, err := ResolveModules(a.Kernel.Modules, []string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[strings.TrimSuffix(filepath.Base(m), ".ko")] = i
	}
	// virtio_net needs net_failover which needs failover; virtio_ring/virtio first.
	for _, before := range [][2]string{{"failover", "net_failover"}, {"net_failover", "virtio_net"}, {"virtio", "virtio_net"}, {"virtio_ring", "virtio_net"}} {
		a, aok := pos[before[0]]
		b, bok := pos[before[1]]
		if !aok || !bok || a >= b {
			t.Errorf("want %s before %s in %v", before[0], before[1], mods)
		}
	}
	if _, err := ResolveModules(a.Kernel.Modules, []string{"no_such_module_xyz"}); err == nil {
		t.Error("unknown module resolved")
	}
}

func TestSignedArtefactsVerify(t *testing.T) {
	t.Parallel()
	a := prepared(t)
	ctx := t.Context()
	for _, f := range []string{a.UKISigned, a.IPXESigned} {
		if err := Verify(ctx, Snakeoil.Cert, f); err != nil {
			t.Errorf("sbverify signed %s: %v", f, err)
		}
	}
	// The unsigned UKI and Debian's iPXE must NOT verify: the check can fail.
	for _, f := range []string{a.UKI, "/usr/lib/ipxe/ipxe.efi"} {
		if err := Verify(ctx, Snakeoil.Cert, f); err == nil {
			t.Errorf("sbverify accepted unsigned %s", f)
		}
	}
	out, err := exec.CommandContext(ctx, "objdump", "-h", a.UKISigned).Output()
	if err != nil {
		t.Fatalf("objdump: %v", err)
	}
	for _, s := range []string{".osrel", ".cmdline", ".linux", ".initrd"} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("UKI lacks section %s:\n%s", s, out)
		}
	}
	dir := t.TempDir()
	if err := a.Install(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{AssetVmlinuz, AssetInitramfs, AssetUKISigned, AssetIPXESigned, AssetUndionly} {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.Size() == 0 {
			t.Errorf("installed asset %s: %v", n, err)
		}
	}
}

func TestWriteInitramfsSimulator(t *testing.T) {
	t.Parallel()
	need(t, "cpio")
	dir := t.TempDir()
	bb := filepath.Join(dir, "busybox")
	sim := filepath.Join(dir, "talossim")
	mod := filepath.Join(dir, "virtio_net.ko")
	for p, c := range map[string]string{bb: "BB", sim: "SIM", mod: "KO"} {
		if err := os.WriteFile(p, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		spec    InitramfsSpec
		wantSim bool
	}{
		{"with simulator", InitramfsSpec{Busybox: bb, Modules: []string{mod}, Simulator: sim}, true},
		{"without", InitramfsSpec{Busybox: bb, Modules: []string{mod}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := WriteInitramfs(&buf, tc.spec); err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			cmd := exec.CommandContext(t.Context(), "cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
			cmd.Dir, cmd.Stdin = out, zr
			if b, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(b), "dev/console") {
				t.Fatalf("cpio -i: %v: %s", err, b)
			}
			st, err := os.Stat(filepath.Join(out, "bin", "talossim"))
			if tc.wantSim != (err == nil) {
				t.Fatalf("bin/talossim present=%v, want %v", err == nil, tc.wantSim)
			}
			if tc.wantSim && st.Mode().Perm()&0o111 == 0 {
				t.Errorf("bin/talossim mode %v, not executable", st.Mode())
			}
			order, err := os.ReadFile(filepath.Join(out, "lib", "modules", "load.order"))
			if err != nil || string(order) != "virtio_net.ko\n" {
				t.Errorf("load.order = %q, %v", order, err)
			}
			init, err := os.ReadFile(filepath.Join(out, "init"))
			if err != nil || !strings.Contains(string(init), "ONRAMP-LAB: booted") {
				t.Errorf("init lacks the marker line: %v", err)
			}
		})
	}
	// The cache key changes with the simulator, so a new talossim rebuilds.
	cache := t.TempDir()
	a, err := BuildInitramfs(cache, tests[0].spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sim, []byte("SIM v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := BuildInitramfs(cache, tests[0].spec)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("changed simulator reused cached initramfs %s", a)
	}
}
