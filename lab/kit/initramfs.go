package kit

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Marker is the prefix of every line the guest's init prints for the lab
// (and that `onramp lab status` reads back from the serial log).
const Marker = "ONRAMP-LAB:"

// SimulatorPath is where the Talos node simulator lives in the initramfs.
const SimulatorPath = "/bin/talossim"

// InitramfsSpec lists what goes into a guest initramfs.
type InitramfsSpec struct {
	Busybox   string   // static busybox binary, e.g. /bin/busybox (busybox-static)
	Modules   []string // .ko files in load order (see ResolveModules)
	Simulator string   // optional static talossim binary; "" for none
}

// initScript is the guest's PID 1. It prints one `ONRAMP-LAB: booted` line
// with what the guest sees (address from DHCP, firmware type, SecureBoot and
// setup mode from EFI variables, TPM presence, SMBIOS identity), then runs the
// simulator. When the simulator exits or is absent it keeps printing status
// lines; it never offers a shell on the console.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /run /tmp /var/lib/onramp /etc
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "ONRAMP-LAB: init started"
for m in $(cat /lib/modules/load.order); do
	insmod "/lib/modules/$m" 2>/tmp/insmod.err || grep -qE 'File exists|No such device' /tmp/insmod.err || echo "ONRAMP-LAB: insmod $m failed: $(cat /tmp/insmod.err)"
done
firmware=bios
secureboot=none
setupmode=none
if [ -d /sys/firmware/efi ]; then
	firmware=uefi
	mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
	g=8be4df61-93ca-11d2-aa0d-00e098032b8c
	secureboot=0
	setupmode=0
	# An EFI variable file is 4 bytes of attributes, then the value.
	efivar() { cat "/sys/firmware/efi/efivars/$1-$g" 2>/dev/null | od -An -tu1 | tr -s ' \n' ' ' | cut -d' ' -f6; }
	v=$(efivar SecureBoot); [ -n "$v" ] && secureboot=$v
	v=$(efivar SetupMode); [ -n "$v" ] && setupmode=$v
	grep -q efivarfs /proc/mounts || echo "ONRAMP-LAB: efivarfs not mounted: $(grep efivarfs /proc/filesystems)"
fi
tpm=0
[ -e /sys/class/tpm/tpm0 ] && tpm=1
dmi() { tr ' ' '_' < /sys/class/dmi/id/$1 2>/dev/null; }
serial=$(dmi product_serial)
vendor=$(dmi sys_vendor)
product=$(dmi product_name)
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
ip link set lo up
ip link set eth0 up 2>/dev/null
ip=none
if udhcpc -i eth0 -n -q -t 8 -T 2 -s /etc/udhcpc.script >/tmp/udhcpc.log 2>&1; then
	ip=$(cat /run/onramp-ip 2>/dev/null)
fi
cat > /run/onramp-lab.env <<EOF
ONRAMP_LAB_IP=$ip
ONRAMP_LAB_FIRMWARE=$firmware
ONRAMP_LAB_SECUREBOOT=$secureboot
ONRAMP_LAB_SETUPMODE=$setupmode
ONRAMP_LAB_TPM=$tpm
EOF
echo "ONRAMP-LAB: booted ip=$ip firmware=$firmware secureboot=$secureboot setupmode=$setupmode tpm=$tpm serial=$serial vendor=$vendor product=$product uuid=$uuid"
if [ -x /bin/talossim ]; then
	/bin/talossim
	echo "ONRAMP-LAB: state=failed reason=simulator_exited_with_status_$?"
else
	echo "ONRAMP-LAB: state=booted no simulator in initramfs"
fi
n=0
while :; do
	sleep 30
	n=$((n+1))
	echo "ONRAMP-LAB: alive ip=$ip uptime=$(cut -d' ' -f1 /proc/uptime) tick=$n"
done
`

// udhcpcScript configures eth0 from busybox udhcpc's environment
// (ip, mask = prefix length, router).
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	echo "$ip" > /run/onramp-ip
	;;
esac
exit 0
`

// InitScript returns the /init script the builder puts into the initramfs.
func InitScript() string { return initScript }

// WriteInitramfs writes a gzip-compressed newc cpio archive for spec to w.
func WriteInitramfs(w io.Writer, spec InitramfsSpec) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	c := NewCPIOWriter(zw)
	for _, d := range []string{"bin", "sbin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "run", "tmp", "usr", "usr/bin", "usr/sbin", "var", "var/lib"} {
		if err := c.Dir(d, 0o755); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's stdio before devtmpfs exists.
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	bb, err := os.ReadFile(spec.Busybox)
	if err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := c.File("bin/busybox", 0o755, bb); err != nil {
		return err
	}
	if err := c.Symlink("bin/sh", "busybox"); err != nil {
		return err
	}
	if err := c.File("init", 0o755, []byte(initScript)); err != nil {
		return err
	}
	if err := c.File("etc/udhcpc.script", 0o755, []byte(udhcpcScript)); err != nil {
		return err
	}
	var order []string
	for _, m := range spec.Modules {
		data, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("write initramfs: %w", err)
		}
		name := filepath.Base(m)
		if err := c.File("lib/modules/"+name, 0o644, data); err != nil {
			return err
		}
		order = append(order, name)
	}
	if err := c.File("lib/modules/load.order", 0o644, []byte(strings.Join(order, "\n")+"\n")); err != nil {
		return err
	}
	if spec.Simulator != "" {
		sim, err := os.ReadFile(spec.Simulator)
		if err != nil {
			return fmt.Errorf("write initramfs: %w", err)
		}
		if err := c.File(strings.TrimPrefix(SimulatorPath, "/"), 0o755, sim); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

// hashInputs returns a hex SHA-256 over the given strings and file contents,
// the cache key of a built artefact.
func hashInputs(texts []string, files []string) (string, error) {
	h := sha256.New()
	for _, t := range texts {
		fmt.Fprintf(h, "t%d:%s\n", len(t), t)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "f:%s\n", filepath.Base(f))
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// BuildInitramfs writes the initramfs for spec into cacheDir (named by a hash
// of all inputs) unless it is already there, and returns its path.
func BuildInitramfs(cacheDir string, spec InitramfsSpec) (string, error) {
	files := append([]string{spec.Busybox}, spec.Modules...)
	if spec.Simulator != "" {
		files = append(files, spec.Simulator)
	}
	key, err := hashInputs([]string{initScript, udhcpcScript, strings.Join(spec.Modules, ",")}, files)
	if err != nil {
		return "", fmt.Errorf("build initramfs: %w", err)
	}
	out := filepath.Join(cacheDir, "initramfs-"+key+".gz")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("build initramfs: %w", err)
	}
	if err := writeAtomic(out, func(w io.Writer) error { return WriteInitramfs(w, spec) }); err != nil {
		return "", fmt.Errorf("build initramfs: %w", err)
	}
	return out, nil
}

// writeAtomic writes a file through a temporary sibling and a rename.
func writeAtomic(path string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := fill(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
