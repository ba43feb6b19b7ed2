package kit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// FetchSystemdBoot returns systemd-boot itself (systemd-bootx64.efi) from
// Debian's systemd-boot-efi package: bookworm ships 252, the first release
// whose loader.conf takes secure-boot-enroll (the SecureBoot enrollment
// image boots it).
func FetchSystemdBoot(ctx context.Context, cacheDir string) (string, error) {
	// The same package as the UKI stub: one unpacker at a time (Prepare
	// may be unpacking it in another test or process).
	unlock, err := lockDir(ctx, cacheDir)
	if err != nil {
		return "", fmt.Errorf("fetch systemd-boot: %w", err)
	}
	defer unlock()
	dir, err := Unpack(ctx, cacheDir, "systemd-boot-efi")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "usr", "lib", "systemd", "boot", "efi", "systemd-bootx64.efi")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("fetch systemd-boot: %w", err)
	}
	return p, nil
}
