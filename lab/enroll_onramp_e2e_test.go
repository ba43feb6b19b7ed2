package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"onramp/lab/kit"
	"onramp/lab/netns"
	"onramp/secureboot"
)

// TestSecureBootEnrollmentOnramp is visit step 4 with Onramp alone: a
// SecureBoot OVMF machine in setup mode netboots from `onramp netboot`,
// whose boot plan says "enroll" for its MAC; Onramp hands it the
// enrollment ISO, systemd-boot on it enrolls the site's keys (made here by
// package secureboot) and resets. Two ways in, as real servers come:
//
//   - http-boot: UEFI HTTP boot (the firmware's PXE turned off). Onramp's
//     DHCP answers vendor class HTTPClient with the ISO's URL and option 60
//     HTTPClient; the HTTP server sends it as application/vnd.efi-iso; OVMF
//     mounts it as a RAM disk and boots systemd-boot.
//   - pxe-ipxe: firmware PXE. An ISO cannot go over TFTP, so Onramp hands
//     out iPXE (unsigned Debian iPXE: setup mode enforces no signatures),
//     whose script sanboots the ISO over HTTP.
//
// Each run checks that the variable store then holds the site's PK and that
// Onramp's event stream shows the ISO going to that machine. Set
// ONRAMP_LAB_E2E=1 (and ONRAMP_BIN to a built onramp, or it is built).
func TestSecureBootEnrollmentOnramp(t *testing.T) {
	if os.Getenv("ONRAMP_LAB_E2E") != "1" {
		t.Skip("set ONRAMP_LAB_E2E=1 to enroll SecureBoot keys through Onramp's own netboot in the lab")
	}
	needRoot(t, "ip", "mkfs.vfat", "mcopy", "xorriso")
	needQEMU(t)
	ctx := t.Context()
	bin := os.Getenv("ONRAMP_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "onramp")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "onramp").CombinedOutput(); err != nil {
			t.Fatalf("build onramp: %v\n%s", err, out)
		}
	}
	if !filepath.IsAbs(bin) {
		t.Fatalf("ONRAMP_BIN %q must be an absolute path", bin)
	}

	ks, err := secureboot.GenerateKeys("Lab Onramp Enrollment Site", secureboot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	enr, err := ks.Enrollment(secureboot.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sdboot, err := kit.FetchSystemdBoot(ctx, testCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	build := t.TempDir()
	esp, iso := filepath.Join(build, "esp.img"), filepath.Join(build, "enroll.iso")
	if err := secureboot.BuildESP(ctx, enr, sdboot, esp); err != nil {
		t.Fatal(err)
	}
	if err := secureboot.BuildISO(ctx, esp, iso); err != nil {
		t.Fatal(err)
	}
	isoInfo, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		machine  int
		httpOnly bool
		budget   time.Duration
	}{
		{"http-boot", 61, true, 240 * time.Second},
		{"pxe-ipxe", 62, false, 300 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := NewMachine(tc.machine, FirmwareUEFISecureBoot, KeysSetup, false, 0)
			r := runEnrollOnramp(t, bin, iso, m, tc.httpOnly, tc.budget)

			// Onramp's own timeline of this machine: the DHCP answer and
			// the ISO's download.
			var isoBytes int64
			var dhcpFile, script string
			for _, e := range r.events {
				if e.MAC != m.MAC {
					continue
				}
				switch {
				case e.Kind == "dhcp.ack" && e.File != "" && dhcpFile == "":
					dhcpFile = e.File
				case e.Kind == "ipxe.script":
					script = e.Detail
				case e.Kind == "http.done" && e.File == "assets/"+AssetEnrollISO:
					isoBytes += e.Bytes
				}
			}
			if tc.httpOnly {
				if !strings.HasSuffix(dhcpFile, "/assets/"+AssetEnrollISO) {
					t.Errorf("first dhcp.ack with a boot file names %q, want the ISO's URL", dhcpFile)
				}
				if isoBytes < isoInfo.Size() {
					t.Errorf("Onramp's events show %d bytes of the ISO sent to %s, want the whole %d", isoBytes, m.MAC, isoInfo.Size())
				}
			} else {
				if dhcpFile != "ipxe.efi" {
					t.Errorf("first dhcp.ack with a boot file names %q, want ipxe.efi (firmware PXE cannot load an ISO)", dhcpFile)
				}
				if script != "enroll: "+AssetEnrollISO {
					t.Errorf("ipxe.script event detail %q, want %q", script, "enroll: "+AssetEnrollISO)
				}
				// sanboot reads only the blocks it needs, by Range.
				if isoBytes == 0 {
					t.Errorf("Onramp's events show no ISO bytes sent to %s", m.MAC)
				}
			}
			t.Logf("%s: Onramp's events: DHCP boot file %q, iPXE script %q, %d ISO bytes over HTTP (ISO is %d)",
				tc.name, dhcpFile, script, isoBytes, isoInfo.Size())

			// The variable store holds the site's PK, KEK and db.
			checkEnrolledSiteKeys(t, r.vars, ks.Fingerprints())
		})
	}
}

// enrollRun is what one enrollment boot left behind.
type enrollRun struct {
	events []enrollEvent
	vars   []byte // the machine's OVMF variable store after the run
}

type enrollEvent struct {
	Kind, MAC, File, Detail, Error string
	Bytes                          int64
}

// runEnrollOnramp boots machine m (SecureBoot OVMF, setup mode) in a fresh
// namespace against `bin netboot`, serving iso at AssetEnrollISO with a plan
// that enrolls m, until QEMU exits on systemd-boot's reset.
func runEnrollOnramp(t *testing.T, bin, iso string, m Machine, httpOnly bool, budget time.Duration) enrollRun {
	t.Helper()
	ctx := t.Context()
	work := t.TempDir()
	assets := filepath.Join(work, "assets")
	if err := os.MkdirAll(filepath.Join(assets, filepath.Dir(AssetEnrollISO)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyTestFile(iso, filepath.Join(assets, AssetEnrollISO)); err != nil {
		t.Fatal(err)
	}
	plan, err := EnrollPlanJSON([]Machine{m})
	if err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(work, "plan.json")
	if err := os.WriteFile(planFile, plan, 0o644); err != nil {
		t.Fatal(err)
	}

	ns := fmt.Sprintf("oen-t%06x", rand.IntN(1<<24))
	tap := "oentap0"
	if err := netns.Create(ctx, netns.Config{Name: ns, Taps: []string{tap}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Destroy(context.Background(), ns); err != nil {
			t.Errorf("destroy namespace %s: %v", ns, err)
		}
		if fileExists(netns.Path(ns)) {
			t.Errorf("namespace %s left behind", ns)
		}
	})

	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	// Router advertisements spare iPXE its ~13 s IPv6 wait.
	ra := &netns.Advertiser{NetNS: ns, Iface: netns.DefaultBridge, Prefix: netip.MustParsePrefix("fd77::/64")}
	go func() { _ = ra.Run(sctx); done <- nil }()
	env := NetbootEnv{
		NetNS: ns, Iface: netns.DefaultBridge,
		ServerIP: net.IP(netns.DefaultIPv4.Addr().AsSlice()), Subnet: netns.DefaultIPv4.Masked(),
		AssetsDir: assets, IPXEDir: "/usr/lib/ipxe", PlanFile: planFile, DataDir: work,
	}
	go func() { done <- ExecNetboot(bin, "--discover=false")(sctx, env) }()
	t.Cleanup(func() {
		stop()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("onramp netboot: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("onramp netboot or the RA sender did not stop within 30 s")
				return
			}
		}
	})
	if err := waitUDPPort(ctx, ns, 67, 20*time.Second); err != nil {
		logs, _ := os.ReadFile(filepath.Join(work, NetbootLogFile))
		t.Fatalf("onramp netboot not serving: %v\n%s", err, tail(string(logs), 2000))
	}

	vm := &VM{Machine: m, Dir: filepath.Join(work, m.Name), NetNS: ns, Tap: tap, HTTPBootOnly: httpOnly}
	runCtx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	start := time.Now()
	err = vm.Run(runCtx)
	took := time.Since(start)
	serial, _ := os.ReadFile(vm.SerialLog())
	evb, _ := os.ReadFile(filepath.Join(work, NetbootEventsFile))
	if !errors.Is(err, ErrExited) || !strings.Contains(string(serial), `Enrolling secure boot keys from directory: \loader\keys\auto`) {
		logs, _ := os.ReadFile(filepath.Join(work, NetbootLogFile))
		t.Fatalf("enrollment through onramp netboot: %v after %s; want QEMU to exit on systemd-boot's reset after it enrolled; serial tail:\n%s\nevents tail:\n%s\nnetboot log tail:\n%s",
			err, took.Round(100*time.Millisecond), tail(string(serial), 3000), tail(string(evb), 3000), tail(string(logs), 1500))
	}
	how := "UEFI HTTP boot → ISO as RAM disk"
	if !httpOnly {
		how = "firmware PXE → TFTP ipxe.efi → iPXE script → sanboot ISO over HTTP"
	}
	t.Logf("%s: power-on → Onramp DHCP → %s → systemd-boot → keys enrolled → reset in %s", m.Name, how, took.Round(100*time.Millisecond))

	var r enrollRun
	for line := range strings.SplitSeq(string(evb), "\n") {
		var e enrollEvent
		if json.Unmarshal([]byte(line), &e) == nil && e.Kind != "" {
			r.events = append(r.events, e)
		}
	}
	r.vars, err = os.ReadFile(vm.varsPath())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkEnrolledSiteKeys: PK is exactly the site's; KEK and db hold the
// site's certificate (Microsoft's are kept beside them).
func checkEnrolledSiteKeys(t *testing.T, varsFD []byte, fp secureboot.Fingerprints) {
	t.Helper()
	vars, err := secureboot.ParseVarStore(varsFD)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		name   string
		vendor secureboot.GUID
		want   string
		only   bool
	}{
		{"PK", secureboot.GlobalVariable, fp.PK, true},
		{"KEK", secureboot.GlobalVariable, fp.KEK, false},
		{"db", secureboot.ImageSecurityDatabase, fp.DB, false},
	} {
		variable := secureboot.FindVariable(vars, v.name, v.vendor)
		if variable == nil {
			t.Errorf("no %s in the variable store after enrollment", v.name)
			continue
		}
		lists, err := secureboot.ParseSignatureLists(variable.Data)
		if err != nil {
			t.Errorf("parse %s: %v", v.name, err)
			continue
		}
		certs, err := secureboot.Certificates(lists)
		if err != nil {
			t.Errorf("certificates in %s: %v", v.name, err)
			continue
		}
		var fps []string
		for _, c := range certs {
			fps = append(fps, secureboot.CertFingerprint(c.Raw))
		}
		if !slices.Contains(fps, v.want) || (v.only && len(fps) != 1) {
			t.Errorf("%s holds %q, want the site's %s%s", v.name, fps, v.want, map[bool]string{true: " only"}[v.only])
		}
	}
}
