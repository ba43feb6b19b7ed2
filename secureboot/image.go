package secureboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The enrollment image is an EFI System Partition holding systemd-boot
// (as the removable-media loader \EFI\BOOT\BOOTX64.EFI) and, in
// \loader\keys\auto\, the site's db.auth, KEK.auth and PK.auth. With
// `secure-boot-enroll force` in loader.conf, systemd-boot (252 or later)
// finding the firmware in setup mode enrolls the keys of the directory named
// "auto" (only that name is enrolled unattended) after a 15 s countdown —
// db, then KEK, then PK — and resets the machine, which then boots with
// SecureBoot on. On a machine not in setup mode it does nothing and shows
// its menu.
//
// BuildESP makes the FAT image with dosfstools (mkfs.vfat) and mtools
// (mmd, mcopy); BuildISO wraps it with xorriso into a hybrid ISO: an El
// Torito EFI boot image for CD drives and UEFI HTTP boot (which mounts a
// downloaded ISO as a RAM disk), and the same image as a GPT EFI System
// Partition, so the file also boots written to a USB stick or attached as
// a disk.

// LoaderConf is the loader.conf of the enrollment image.
const LoaderConf = "# Onramp SecureBoot enrollment: enroll loader/keys/auto when in setup mode\n" +
	"timeout 5\n" +
	"secure-boot-enroll force\n"

// ErrOldSystemdBoot is returned for a systemd-boot that does not know
// secure-boot-enroll (added in systemd 252).
var ErrOldSystemdBoot = errors.New("systemd-boot does not support secure-boot-enroll (needs systemd 252 or later)")

// CheckSystemdBoot checks that the systemd-boot binary at path knows the
// secure-boot-enroll loader.conf key.
func CheckSystemdBoot(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("check systemd-boot: %w", err)
	}
	if !bytes.Contains(b, []byte("secure-boot-enroll")) {
		return fmt.Errorf("check systemd-boot %s: %w", path, ErrOldSystemdBoot)
	}
	return nil
}

// ImageFiles are the enrollment image's files, by path inside the ESP.
func (e *Enrollment) ImageFiles(systemdBoot []byte) map[string][]byte {
	return map[string][]byte{
		"EFI/BOOT/BOOTX64.EFI":      systemdBoot,
		"loader/loader.conf":        []byte(LoaderConf),
		"loader/keys/auto/db.auth":  e.DB,
		"loader/keys/auto/KEK.auth": e.KEK,
		"loader/keys/auto/PK.auth":  e.PK,
	}
}

// BuildESP writes the enrollment FAT image to out. systemdBoot is the path
// of systemd-bootx64.efi (Debian package systemd-boot-efi).
func BuildESP(ctx context.Context, e *Enrollment, systemdBoot, out string) error {
	if err := CheckSystemdBoot(systemdBoot); err != nil {
		return fmt.Errorf("build enrollment image: %w", err)
	}
	sdb, err := os.ReadFile(systemdBoot)
	if err != nil {
		return fmt.Errorf("build enrollment image: %w", err)
	}
	files := e.ImageFiles(sdb)
	total := 0
	for _, b := range files {
		total += len(b)
	}
	// Room for FAT overhead; at least 4 MiB (FAT12/16 either way, which
	// UEFI reads on removable media).
	kib := max(4096, (total*2/1024+1023)&^1023)
	tmp := out + ".tmp"
	_ = os.Remove(tmp)
	defer os.Remove(tmp)
	if err := tool(ctx, "mkfs.vfat", "-C", "-n", "ONRAMP_SB", tmp, fmt.Sprint(kib)); err != nil {
		return fmt.Errorf("build enrollment image: %w", err)
	}
	for _, d := range []string{"EFI", "EFI/BOOT", "loader", "loader/keys", "loader/keys/auto"} {
		if err := tool(ctx, "mmd", "-i", tmp, "::/"+d); err != nil {
			return fmt.Errorf("build enrollment image: %w", err)
		}
	}
	src, err := os.MkdirTemp("", "onramp-esp-")
	if err != nil {
		return fmt.Errorf("build enrollment image: %w", err)
	}
	defer os.RemoveAll(src)
	for name, b := range files {
		p := filepath.Join(src, filepath.Base(name))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("build enrollment image: %w", err)
		}
		if err := tool(ctx, "mcopy", "-i", tmp, p, "::/"+name); err != nil {
			return fmt.Errorf("build enrollment image: %w", err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("build enrollment image: %w", err)
	}
	return nil
}

// efiSystemPartition is the GPT partition type of an ESP.
const efiSystemPartition = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

// BuildISO writes a hybrid ISO to out whose EFI boot image (El Torito) and
// GPT EFI System Partition are the FAT image esp (from BuildESP).
func BuildISO(ctx context.Context, esp, out string) error {
	root, err := os.MkdirTemp("", "onramp-iso-")
	if err != nil {
		return fmt.Errorf("build enrollment iso: %w", err)
	}
	defer os.RemoveAll(root)
	readme := "Onramp SecureBoot key enrollment.\r\nBoot this in UEFI setup mode: systemd-boot enrolls the site's PK, KEK and db and resets.\r\n"
	if err := os.WriteFile(filepath.Join(root, "README.TXT"), []byte(readme), 0o644); err != nil {
		return fmt.Errorf("build enrollment iso: %w", err)
	}
	tmp := out + ".tmp"
	_ = os.Remove(tmp)
	defer os.Remove(tmp)
	if err := tool(ctx, "xorriso", "-as", "mkisofs", "-o", tmp, "-iso-level", "3", "-V", "ONRAMP_SB",
		"-append_partition", "2", efiSystemPartition, esp, "-appended_part_as_gpt",
		"-e", "--interval:appended_partition_2:all::", "-no-emul-boot",
		root); err != nil {
		return fmt.Errorf("build enrollment iso: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("build enrollment iso: %w", err)
	}
	return nil
}

// ReadESPFile reads one file from a FAT image with mtools' mtype (used by
// tests and to check a built image).
func ReadESPFile(ctx context.Context, img, name string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "mtype", "-i", img, "::/"+name)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("read %s from %s: %w: %s", name, img, err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func tool(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
