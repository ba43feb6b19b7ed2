package kit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultCmdline is the guest kernel command line: the serial console the
// lab reads its state from, no reboot loop on panic (QEMU runs with
// -no-reboot and exits instead), quiet enough to keep TCG boots quick, and
// ReportCmdline.
const DefaultCmdline = "console=ttyS0,115200 panic=-1 loglevel=4 talos.platform=metal " + ReportCmdline

// ReportCmdline points the guest's Talos (the simulator) at Onramp's
// receivers on the lab server (lab/netns' bridge address 10.77.0.1): events
// to the siderolink event sink on 4002, the kernel log as JSON lines over TCP
// on 4001. Onramp adds the same to kernel boots it serves; the UKI needs them
// baked in, since under SecureBoot its embedded command line wins.
const ReportCmdline = "talos.events.sink=10.77.0.1:4002 talos.logging.kernel=tcp://10.77.0.1:4001"

// The signing-key fingerprints the Talos simulator reports in
// SecurityState when it boots from the lab's signed UKI (it cannot measure
// its own image, so they come from its command line: onramp.sim.uki_fpr=,
// onramp.sim.pcr_fpr=; see lab/sim/README.md). They are what a site using
// the lab expects in node.Expected. The UKI one is the SHA-256 of Debian's
// snakeoil certificate (DER), the lab's default signing key; the lab has no
// PCR signing key, so the PCR one is a fixed test value (the SHA-256 of
// "onramp lab PCR signing key (fixed test value)").
const (
	LabUKISigningKeyFingerprint = "282e8130b7070f107aaecc25d3992ca4440270860b09088792a5075fab0d13f8"
	LabPCRSigningKeyFingerprint = "6755d582ed83cbba5ce1f3981a65aa4d44f26222efbabcbd2c391a8ad428cb37"
)

// DefaultUKICmdline is the command line embedded in the lab's UKI: the
// default one plus the simulator's signing-key fingerprints. Kernel+initrd
// boots (no UKI) carry none, as a Talos node not booted from a UKI reports
// none.
const DefaultUKICmdline = DefaultCmdline +
	" onramp.sim.uki_fpr=" + LabUKISigningKeyFingerprint +
	" onramp.sim.pcr_fpr=" + LabPCRSigningKeyFingerprint

// Options configure Prepare. Zero fields take the defaults noted.
type Options struct {
	CacheDir      string     // required: downloads and built artefacts
	KernelPackage string     // default: what linux-image-amd64 depends on
	Busybox       string     // default /bin/busybox (package busybox-static)
	Simulator     string     // optional talossim binary to put in the initramfs
	UKICmdline    string     // embedded in the UKI; default DefaultUKICmdline
	Key           SigningKey // db key for the UKI and iPXE; default Snakeoil
	IPXEEFI       string     // default /usr/lib/ipxe/ipxe.efi (package ipxe)
}

// Assets are the built guest artefacts, all inside the cache.
type Assets struct {
	Kernel      *Kernel
	Vmlinuz     string
	Initramfs   string
	UKI         string // unsigned
	UKISigned   string // signed with Options.Key
	IPXESigned  string // ipxe.efi signed with Options.Key
	UKICmdline  string
	SigningCert string
}

// Prepare fetches the kernel and stub and builds (or finds in the cache) the
// initramfs, the UKI and the signed UKI and iPXE.
func Prepare(ctx context.Context, o Options) (*Assets, error) {
	if o.CacheDir == "" {
		return nil, fmt.Errorf("prepare guest kit: no cache dir")
	}
	// Tests in several packages (and a lab started beside them) share one
	// cache: one preparer at a time, across processes, or two downloads
	// and unpacks of the same package trip over each other.
	unlock, err := lockDir(ctx, o.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	defer unlock()
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if o.UKICmdline == "" {
		o.UKICmdline = DefaultUKICmdline
	}
	if o.Key.Key == "" {
		o.Key = Snakeoil
	}
	if o.IPXEEFI == "" {
		o.IPXEEFI = "/usr/lib/ipxe/ipxe.efi"
	}
	k, err := FetchKernel(ctx, o.CacheDir, o.KernelPackage)
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	mods, err := ResolveModules(k.Modules, GuestModules)
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	built := filepath.Join(o.CacheDir, "built")
	initrd, err := BuildInitramfs(built, InitramfsSpec{Busybox: o.Busybox, Modules: mods, Simulator: o.Simulator})
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	stub, err := FetchStub(ctx, o.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	uki, err := BuildUKI(ctx, built, UKISpec{Stub: stub, Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: o.UKICmdline})
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	a := &Assets{Kernel: k, Vmlinuz: k.Vmlinuz, Initramfs: initrd, UKI: uki, UKICmdline: o.UKICmdline, SigningCert: o.Key.Cert}
	keyTag, err := hashInputs(nil, []string{o.Key.Cert})
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	a.UKISigned = uki[:len(uki)-len(".efi")] + ".signed-" + keyTag + ".efi"
	if err := signOnce(ctx, o.Key, uki, a.UKISigned); err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	ipxeTag, err := hashInputs(nil, []string{o.IPXEEFI})
	if err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	a.IPXESigned = filepath.Join(built, "ipxe-"+ipxeTag+".signed-"+keyTag+".efi")
	if err := signOnce(ctx, o.Key, o.IPXEEFI, a.IPXESigned); err != nil {
		return nil, fmt.Errorf("prepare guest kit: %w", err)
	}
	return a, nil
}

func signOnce(ctx context.Context, key SigningKey, in, out string) error {
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	return Sign(ctx, key, in, out)
}

// Asset names under <assets>/lab/, as served over HTTP under /assets/lab/.
// lab/ipxe/ is an iPXE directory for `onramp netboot --ipxe-dir`: its
// ipxe.efi is Debian's, signed with the site key, so the same file boots on
// UEFI without SecureBoot and under site keys, and is refused (Access
// Denied) by firmware holding only vendor keys.
const (
	AssetVmlinuz    = "lab/vmlinuz"
	AssetInitramfs  = "lab/initramfs.gz"
	AssetUKISigned  = "lab/uki.signed.efi"
	AssetIPXEDir    = "lab/ipxe"
	AssetIPXESigned = "lab/ipxe/ipxe.efi"      // ipxe.efi signed with the site (snakeoil) key
	AssetUndionly   = "lab/ipxe/undionly.kpxe" // BIOS PXE: Debian's undionly.kpxe
)

// Install copies the artefacts into assetsDir under the Asset* names.
func (a *Assets) Install(assetsDir string) error {
	if err := os.MkdirAll(filepath.Join(assetsDir, AssetIPXEDir), 0o755); err != nil {
		return fmt.Errorf("install lab assets: %w", err)
	}
	for _, c := range []struct{ src, dst string }{
		{a.Vmlinuz, AssetVmlinuz},
		{a.Initramfs, AssetInitramfs},
		{a.UKISigned, AssetUKISigned},
		{a.IPXESigned, AssetIPXESigned},
		{"/usr/lib/ipxe/undionly.kpxe", AssetUndionly},
	} {
		if err := copyFile(c.src, filepath.Join(assetsDir, c.dst)); err != nil {
			return fmt.Errorf("install lab assets: %w", err)
		}
	}
	return nil
}
