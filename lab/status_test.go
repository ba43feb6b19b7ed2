package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestObserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		log  string
		want string
	}{
		{"empty", "", "booting"},
		{"firmware pxe", ">>Start PXE over IPv4.\r\n  Station IP address is 10.77.0.101\r\n", "booting"},
		{"vendor keys refuse ipxe", "  NBP file downloaded successfully.\r\nBdsDxe: failed to load Boot0001 \"UEFI PXEv4 (MAC:525400770004)\" from PciRoot(0x0)/Pci(0x2,0x0): Access Denied\r\n>>Start PXE over IPv6.\r\n",
			"failed: firmware refused the boot loader: not signed by a key in its SecureBoot db"},
		{"ipxe exec format", "http://10.77.0.1:8080/assets/lab/vmlinuz... ok\nCould not boot: Exec format error (https://ipxe.org/2e008081)\n",
			"failed: iPXE could not start the kernel: under SecureBoot only a signed UKI boots"},
		{"booted", "Linux version 6.1\nONRAMP-LAB: init started\nONRAMP-LAB: booted ip=10.77.0.101 firmware=uefi secureboot=1 tpm=1 serial=LAB-0001\n", "booted"},
		{"simulator states", "ONRAMP-LAB: booted ip=10.77.0.101\nONRAMP-LAB: state=maintenance\nONRAMP-LAB: state=installing\n", "installing"},
		{"simulator console line", "ONRAMP-LAB: booted ip=x\n[talos] maintenance mode: certificate fingerprint (SHA-256 of SPKI) ab12\n", "maintenance"},
		{"installed", "ONRAMP-LAB: booted ip=x\nONRAMP-LAB: state=maintenance\nONRAMP-LAB: state=installing\nONRAMP-LAB: state=installed\n", "installed"},
		{"simulator failed", "ONRAMP-LAB: booted ip=x\nONRAMP-LAB: state=failed reason=SecureBoot_is_off:_TPM_disk_encryption_refused\n", "failed: SecureBoot is off: TPM disk encryption refused"},
		{"firmware text after boot is ignored", "ONRAMP-LAB: booted ip=x\nsome Access Denied in a guest log\n", "booted"},
		{"panic", "Kernel panic - not syncing: Attempted to kill init!\n", "failed: guest kernel panic"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "serial.log")
			if err := os.WriteFile(p, []byte(tc.log), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := ObserveFile(p).String(); got != tc.want {
				t.Errorf("state %q, want %q", got, tc.want)
			}
		})
	}
	o := ObserveFile(filepath.Join(t.TempDir(), "missing.log"))
	if o.State != StateBooting {
		t.Errorf("missing log: %q, want booting", o)
	}
}

func TestStatusFromStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := Status(dir); err != ErrNoLab {
		t.Fatalf("Status on empty dir: %v, want ErrNoLab", err)
	}
	ms := []Machine{NewMachine(1, FirmwareUEFI, "", true, 0), NewMachine(2, FirmwareUEFISecureBoot, KeysVendor, false, 0), NewMachine(3, FirmwareBIOS, "", false, 0)}
	st := &State{PID: os.Getpid(), Running: true, Started: time.Now(), NetNS: "obl-tx"}
	logs := []string{
		"ONRAMP-LAB: booted ip=10.77.0.100\nONRAMP-LAB: state=maintenance\n",
		"BdsDxe: failed to load Boot0001: Access Denied\n",
		"",
	}
	for i, m := range ms {
		md := filepath.Join(dir, "machines", m.Name)
		if err := os.MkdirAll(md, 0o755); err != nil {
			t.Fatal(err)
		}
		if logs[i] != "" {
			os.WriteFile(filepath.Join(md, "serial.log"), []byte(logs[i]), 0o644)
		}
		st.Machines = append(st.Machines, MachineState{Machine: m, Dir: md, Tap: "tap0"})
	}
	st.Machines[2].Exit = "qemu exited: exit status 1"
	ms4 := NewMachine(4, FirmwareUEFI, "", false, 0)
	st.Machines = append(st.Machines, MachineState{Machine: ms4, Dir: filepath.Join(dir, "machines", "lab-4")})
	events := `{"time":"2026-11-29T13:34:10Z","kind":"dhcp.ack","mac":"52:54:00:77:00:04","ip":"10.77.0.104"}
not json
{"time":"2026-11-29T13:34:11Z","kind":"tftp.done","mac":"52:54:00:77:00:04","file":"ipxe.efi","bytes":852232}
{"time":"2026-11-29T13:34:12Z","kind":"dhcp.ack","mac":"52:54:00:77:00:01"}
`
	if err := os.WriteFile(filepath.Join(dir, NetbootEventsFile), []byte(events), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(dir, st); err != nil {
		t.Fatal(err)
	}
	lines, _, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []StatusLine{
		{"lab-1", "52:54:00:77:00:01", "uefi+tpm", "maintenance"},
		{"lab-2", "52:54:00:77:00:02", "uefi-secureboot/vendor", "failed: firmware refused the boot loader: not signed by a key in its SecureBoot db"},
		{"lab-3", "52:54:00:77:00:03", "bios", "failed: qemu exited: exit status 1"},
		{"lab-4", "52:54:00:77:00:04", "uefi", "booting (tftp.done ipxe.efi)"},
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// A lab whose process is gone reads as off.
	st.PID = 1 << 22 // above pid_max's default: no such process
	if err := WriteState(dir, st); err != nil {
		t.Fatal(err)
	}
	lines, got, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Running || !strings.HasPrefix(lines[0].State, StateOff) {
		t.Errorf("dead lab: running=%v state %q", got.Running, lines[0].State)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".lab.json") {
			t.Errorf("temporary state file left: %s", e.Name())
		}
	}
}

func TestMachineArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		m        Machine
		tap      string
		tpm      string
		contains []string
		absent   []string
	}{
		{NewMachine(1, FirmwareUEFI, "", true, 1<<30), "tap0", "/tmp/s.sock",
			[]string{"q35", OVMFCode, "romfile=", "mac=52:54:00:77:00:01", "tpm-tis,tpmdev=tpm0", "virtio-blk-pci,drive=disk0,serial=DISK-LAB-0001", "serial=LAB-0001", "-accel tcg"},
			[]string{"smm=on", "secboot"}},
		{NewMachine(2, FirmwareUEFISecureBoot, KeysSite, false, 0), "tap1", "",
			[]string{"q35,smm=on", OVMFCodeSecBoot, "property=secure,value=on", "ICH9-LPC.disable_s3=1", "romfile="},
			[]string{"tpm-tis", "virtio-blk"}},
		{NewMachine(3, FirmwareBIOS, "", false, 0), "tap2", "",
			[]string{"-machine pc", "ifname=tap2"},
			[]string{"pflash", "romfile="}},
		{Machine{Name: "x", MAC: "52:54:00:77:00:09", Firmware: FirmwareBIOS, Vendor: "A,B", Product: "p", Serial: "s", UUID: "u"}, "", "",
			[]string{"manufacturer=A,,B", "-nic none"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.m.Name, func(t *testing.T) {
			t.Parallel()
			v := &VM{Machine: tc.m, Dir: "/d", Tap: tc.tap}
			got := strings.Join(v.Args(tc.tpm), " ")
			for _, c := range tc.contains {
				if !strings.Contains(got, c) {
					t.Errorf("args lack %q:\n%s", c, got)
				}
			}
			for _, c := range tc.absent {
				if strings.Contains(got, c) {
					t.Errorf("args have %q:\n%s", c, got)
				}
			}
		})
	}
	if tpl := NewMachine(1, FirmwareUEFISecureBoot, KeysVendor, false, 0).varsTemplate(); tpl != OVMFVarsMS {
		t.Errorf("vendor keys vars %s", tpl)
	}
	if err := (Machine{Name: "a b", MAC: "52:54:00:77:00:01", Firmware: FirmwareBIOS}).Validate(); err == nil {
		t.Error("name with space accepted")
	}
}
