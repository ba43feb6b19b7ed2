// Package kit builds what a virtual-lab guest boots: a Debian kernel with the
// few modules the guest needs, an initramfs (newc cpio, gzip; the format
// the kernel documents in Documentation/driver-api/early-userspace/
// buffer-format.rst) holding busybox, an /init script and optionally the
// Talos node simulator, a unified kernel image (UKI: the systemd-boot EFI stub
// with .linux/.initrd/.cmdline/.osrel sections, per the UAPI Group's UKI
// specification) and Authenticode signatures made with sbsign for SecureBoot
// (UEFI 2.x section 32, db verification of PE/COFF images).
//
// Debian packages are fetched with `apt-get download` and unpacked with
// `dpkg -x` into a cache directory; built artefacts are cached under a name
// derived from a hash of their inputs, so a second `lab up` is instant and
// works offline.
package kit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// run executes a command and folds its output into the error.
func run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// ResolveKernelPackage asks apt which versioned kernel image package the
// linux-image-amd64 metapackage currently depends on
// (e.g. "linux-image-6.1.0-57-amd64").
func ResolveKernelPackage(ctx context.Context) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return "", fmt.Errorf("resolve kernel package: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("resolve kernel package: no linux-image dependency in apt-cache output")
}

// Unpack returns the directory holding the unpacked Debian package pkg,
// downloading (`apt-get download`) and unpacking (`dpkg -x`) it into
// cacheDir/debs and cacheDir/pkg/<pkg> the first time.
func Unpack(ctx context.Context, cacheDir, pkg string) (string, error) {
	dest := filepath.Join(cacheDir, "pkg", pkg)
	if _, err := os.Stat(filepath.Join(dest, ".unpacked")); err == nil {
		return dest, nil
	}
	debs := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("unpack %s: %w", pkg, err)
	}
	matches, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
	if len(matches) == 0 {
		if _, err := run(ctx, debs, "apt-get", "download", pkg); err != nil {
			return "", fmt.Errorf("download %s: %w", pkg, err)
		}
		matches, _ = filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		if len(matches) == 0 {
			return "", fmt.Errorf("download %s: no .deb in %s", pkg, debs)
		}
	}
	tmp := dest + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", fmt.Errorf("unpack %s: %w", pkg, err)
	}
	if _, err := run(ctx, "", "dpkg", "-x", matches[len(matches)-1], tmp); err != nil {
		return "", fmt.Errorf("unpack %s: %w", pkg, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".unpacked"), []byte(filepath.Base(matches[len(matches)-1])+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("unpack %s: %w", pkg, err)
	}
	_ = os.RemoveAll(dest)
	if err := os.Rename(tmp, dest); err != nil {
		return "", fmt.Errorf("unpack %s: %w", pkg, err)
	}
	return dest, nil
}

// cachedPackage finds an already unpacked package whose name starts with
// prefix, for offline runs where apt cannot answer.
func cachedPackage(cacheDir, prefix string) string {
	m, _ := filepath.Glob(filepath.Join(cacheDir, "pkg", prefix+"*", ".unpacked"))
	if len(m) == 0 {
		return ""
	}
	return filepath.Dir(m[len(m)-1])
}

// Kernel is an unpacked Debian kernel.
type Kernel struct {
	Package string // e.g. linux-image-6.1.0-57-amd64
	Release string // e.g. 6.1.0-57-amd64
	Vmlinuz string // path to the bzImage (an EFI-stub PE as well)
	Modules string // path to lib/modules/<release>
}

// FetchKernel downloads and unpacks the current Debian bookworm kernel (the
// package linux-image-amd64 depends on). pkg overrides the package name.
// Offline, a previously unpacked kernel in the cache is used.
func FetchKernel(ctx context.Context, cacheDir, pkg string) (*Kernel, error) {
	if pkg == "" {
		var err error
		pkg, err = ResolveKernelPackage(ctx)
		if err != nil {
			if dir := cachedPackage(cacheDir, "linux-image-"); dir != "" {
				pkg = filepath.Base(dir)
			} else {
				return nil, err
			}
		}
	}
	dir, err := Unpack(ctx, cacheDir, pkg)
	if err != nil {
		return nil, err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("fetch kernel %s: want one boot/vmlinuz-*, found %d", pkg, len(vmlinuz))
	}
	rel := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	return &Kernel{
		Package: pkg,
		Release: rel,
		Vmlinuz: vmlinuz[0],
		Modules: filepath.Join(dir, "lib", "modules", rel),
	}, nil
}

// FetchStub returns the systemd-boot EFI stub (linuxx64.efi.stub) from
// Debian's systemd-boot-efi package.
func FetchStub(ctx context.Context, cacheDir string) (string, error) {
	dir, err := Unpack(ctx, cacheDir, "systemd-boot-efi")
	if err != nil {
		return "", err
	}
	stub := filepath.Join(dir, "usr", "lib", "systemd", "boot", "efi", "linuxx64.efi.stub")
	if _, err := os.Stat(stub); err != nil {
		return "", fmt.Errorf("fetch systemd-boot stub: %w", err)
	}
	return stub, nil
}
