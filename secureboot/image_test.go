package secureboot

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"onramp/lab/kit"
)

// systemdBoot returns Debian's systemd-bootx64.efi (package
// systemd-boot-efi, downloaded into the lab cache like lab/kit does for the
// UKI stub).
func systemdBoot(t *testing.T) string {
	t.Helper()
	for _, b := range []string{"apt-get", "dpkg", "mkfs.vfat", "mcopy", "xorriso"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (packages dosfstools mtools xorriso): %v", b, err)
		}
	}
	cache := os.Getenv("ONRAMP_LAB_CACHE")
	if cache == "" {
		_, file, _, _ := runtime.Caller(0)
		cache = filepath.Join(filepath.Dir(file), "..", "build", "lab-cache")
	}
	p, err := kit.FetchSystemdBoot(t.Context(), cache)
	if err != nil {
		t.Fatalf("fetch systemd-boot: %v", err)
	}
	return p
}

func TestCheckSystemdBoot(t *testing.T) {
	t.Parallel()
	old := filepath.Join(t.TempDir(), "old.efi")
	if err := os.WriteFile(old, []byte("MZ systemd-boot 251 secure-boot-enrol"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckSystemdBoot(old); err == nil {
		t.Error("a systemd-boot without secure-boot-enroll passed")
	}
	if err := CheckSystemdBoot(systemdBoot(t)); err != nil {
		t.Errorf("Debian's systemd-boot: %v", err)
	}
}

// TestBuildImages builds the ESP and the ISO and reads them back with
// fsck.vfat and mtools, and the ISO's GPT by hand: its ESP partition is the
// FAT image byte for byte.
func TestBuildImages(t *testing.T) {
	t.Parallel()
	sdboot := systemdBoot(t)
	ks := keys(t)
	e, err := ks.Enrollment(EnrollOptions{Time: testTime})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	esp, iso := filepath.Join(dir, "esp.img"), filepath.Join(dir, "enroll.iso")
	ctx := t.Context()
	if err := BuildESP(ctx, e, sdboot, esp); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "fsck.vfat", "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat: %v\n%s", err, out)
	}
	sdb, _ := os.ReadFile(sdboot)
	for name, want := range e.ImageFiles(sdb) {
		got, err := ReadESPFile(ctx, esp, name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s in the ESP: %d bytes differ from the %d written", name, len(got), len(want))
		}
	}
	if err := BuildISO(ctx, esp, iso); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "xorriso", "-indev", iso, "-report_el_torito", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso report: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "UEFI") {
		t.Errorf("no UEFI El Torito boot image:\n%s", out)
	}
	img, _ := os.ReadFile(iso)
	espBytes, _ := os.ReadFile(esp)
	part := gptESP(t, img)
	if !bytes.Equal(part[:len(espBytes)], espBytes) {
		t.Errorf("GPT ESP partition is not the FAT image")
	}
}

// gptESP returns the bytes of the first EFI System Partition of a GPT disk
// image (512-byte sectors).
func gptESP(t *testing.T, img []byte) []byte {
	t.Helper()
	if len(img) < 1024 || string(img[512:520]) != "EFI PART" {
		t.Fatal("no GPT header at LBA 1")
	}
	h := img[512:]
	entries := binary.LittleEndian.Uint64(h[72:])
	n := binary.LittleEndian.Uint32(h[80:])
	size := binary.LittleEndian.Uint32(h[84:])
	want, _ := ParseGUID(efiSystemPartition)
	for i := range n {
		e := img[entries*512+uint64(i)*uint64(size):]
		if GUID(e[:16]) == want {
			first, last := binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:])
			return img[first*512 : (last+1)*512]
		}
	}
	t.Fatal("no EFI System Partition in the GPT")
	return nil
}
