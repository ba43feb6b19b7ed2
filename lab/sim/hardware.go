package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Hardware is what SMBIOS type 1 says about the machine (QEMU: -smbios type=1,...).
type Hardware struct {
	Manufacturer string
	Product      string
	Version      string
	Serial       string
	UUID         string
}

// Disk is one block device.
type Disk struct {
	Name       string // vda, sda, nvme0n1
	Size       uint64 // bytes
	Model      string
	Serial     string
	WWID       string
	Readonly   bool
	Rotational bool
	CDROM      bool
	Transport  string
}

// Link is one network interface.
type Link struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	MTU   int
	Up    bool
}

// efiGlobal is the EFI global variable GUID (UEFI spec, 3.3 Globally Defined Variables).
const efiGlobal = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// Firmware is what the firmware reports about SecureBoot.
type Firmware struct {
	UEFI       bool // false: BIOS (no /sys/firmware/efi)
	SecureBoot bool
	SetupMode  bool
	// BootedWithUKI: systemd-stub set its StubInfo variable, so the kernel came
	// from a UKI.
	BootedWithUKI bool
}

// stubGUID is systemd-stub's vendor GUID (systemd Boot Loader Interface).
const stubGUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// readTrim reads a sysfs attribute; missing files read as "".
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}

	return strings.TrimSpace(string(b))
}

// ReadDMI reads SMBIOS system information from dir (normally /sys/class/dmi/id).
func ReadDMI(dir string) (Hardware, error) {
	if _, err := os.Stat(dir); err != nil {
		return Hardware{}, fmt.Errorf("read DMI %s: %w", dir, err)
	}

	return Hardware{
		Manufacturer: readTrim(filepath.Join(dir, "sys_vendor")),
		Product:      readTrim(filepath.Join(dir, "product_name")),
		Version:      readTrim(filepath.Join(dir, "product_version")),
		Serial:       readTrim(filepath.Join(dir, "product_serial")),
		UUID:         strings.ToLower(readTrim(filepath.Join(dir, "product_uuid"))),
	}, nil
}

// ReadBlock lists disks from dir (normally /sys/block), skipping loop, ram, zram and
// device-mapper devices as Talos does.
func ReadBlock(dir string) ([]Disk, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read block devices %s: %w", dir, err)
	}

	var disks []Disk

	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") ||
			strings.HasPrefix(name, "zram") || strings.HasPrefix(name, "dm-") {
			continue
		}

		d := filepath.Join(dir, name)
		sectors, _ := strconv.ParseUint(readTrim(filepath.Join(d, "size")), 10, 64)

		disk := Disk{
			Name:       name,
			Size:       sectors * 512, // sysfs "size" is always in 512-byte units
			Model:      readTrim(filepath.Join(d, "device", "model")),
			Serial:     firstNonEmpty(readTrim(filepath.Join(d, "serial")), readTrim(filepath.Join(d, "device", "serial"))),
			WWID:       firstNonEmpty(readTrim(filepath.Join(d, "wwid")), readTrim(filepath.Join(d, "device", "wwid"))),
			Readonly:   readTrim(filepath.Join(d, "ro")) == "1",
			Rotational: readTrim(filepath.Join(d, "queue", "rotational")) == "1",
			CDROM:      strings.HasPrefix(name, "sr"),
		}

		switch {
		case strings.HasPrefix(name, "vd"):
			disk.Transport = "virtio"
		case strings.HasPrefix(name, "nvme"):
			disk.Transport = "nvme"
		case strings.HasPrefix(name, "sd"), strings.HasPrefix(name, "sr"):
			disk.Transport = "scsi"
		}

		disks = append(disks, disk)
	}

	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })

	return disks, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}

	return ""
}

// ReadLinks lists the host's interfaces that have a hardware address.
func ReadLinks() ([]Link, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}

	var links []Link

	for _, i := range ifs {
		if len(i.HardwareAddr) == 0 {
			continue
		}

		links = append(links, Link{Name: i.Name, Index: i.Index, MAC: i.HardwareAddr, MTU: i.MTU, Up: i.Flags&net.FlagUp != 0})
	}

	return links, nil
}

// ReadFirmware reads the SecureBoot state the firmware reports. sysfw is normally
// /sys/firmware: no "efi" directory there means the machine booted through BIOS.
// The EFI variables SecureBoot and SetupMode are read from efivars (efivarfs mounted
// at sysfw/efi/efivars): 4 bytes of attributes, then a one-byte value.
func ReadFirmware(sysfw string) (Firmware, error) {
	if _, err := os.Stat(filepath.Join(sysfw, "efi")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Firmware{}, nil
		}

		return Firmware{}, fmt.Errorf("read firmware: %w", err)
	}

	fw := Firmware{UEFI: true}

	vars := filepath.Join(sysfw, "efi", "efivars")

	sb, err := readEFIByte(filepath.Join(vars, "SecureBoot-"+efiGlobal))
	if err != nil {
		return fw, err
	}

	fw.SecureBoot = sb == 1

	sm, err := readEFIByte(filepath.Join(vars, "SetupMode-"+efiGlobal))
	if err != nil {
		return fw, err
	}

	fw.SetupMode = sm == 1

	if _, err := os.Stat(filepath.Join(vars, "StubInfo-"+stubGUID)); err == nil {
		fw.BootedWithUKI = true
	}

	return fw, nil
}

func readEFIByte(path string) (byte, error) {
	b, err := os.ReadFile(path)

	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil // variable absent: firmware without SecureBoot support
	case err != nil:
		return 0, fmt.Errorf("read EFI variable %s: %w", filepath.Base(path), err)
	case len(b) < 5:
		return 0, fmt.Errorf("read EFI variable %s: %d bytes, want 5", filepath.Base(path), len(b))
	}

	return b[4], nil
}
