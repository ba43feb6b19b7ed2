package httpboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	ptftp "github.com/pin/tftp/v3"

	"onramp/netboot"
	"onramp/netboot/dhcp"
	"onramp/netboot/tftp"
)

// fakeEFI is a minimal PE header for machine (debug/pe accepts it).
func fakeEFI(machine uint16) []byte {
	b := make([]byte, 0x40)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x40)
	b = append(b, "PE\x00\x00"...)
	coff := make([]byte, 20)
	binary.LittleEndian.PutUint16(coff, machine)
	b = append(b, coff...)
	return append(b, make([]byte, 4096)...)
}

// bootDir lays out an iPXE directory: Debian's real binaries when the ipxe
// package is installed, stand-ins otherwise, plus a stand-in arm64 snp.efi
// (Debian ships none).
func bootDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, fallback := range map[string][]byte{"undionly.kpxe": []byte("UNDI stand-in"), "ipxe.efi": fakeEFI(0x8664)} {
		b, err := os.ReadFile(filepath.Join("/usr/lib/ipxe", name))
		if err != nil {
			b = fallback
		}
		must(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, "snp.efi"), fakeEFI(0xaa64), 0o644))
	return dir
}

// TestContract checks that everything the DHCP side can advertise (boot
// file names over TFTP, URLs over HTTP, the iPXE script URL and the asset
// URLs in the scripts) is really served by these servers.
func TestContract(t *testing.T) {
	t.Parallel()
	root, missing, err := tftp.BootFiles(bootDir(t))
	must(t, err)
	if len(missing) != 0 {
		t.Fatalf("BootFiles reports missing files: %q", missing)
	}
	fx := newAssets(t, 100_000)

	decisions := map[string]netboot.Decision{
		"52:54:00:77:00:01": kernelDecision,
		"52:54:00:77:00:02": {Kind: netboot.BootUKI, UKI: "talos/v1.14.1/amd64/uki.signed.efi"},
		"52:54:00:77:00:03": {Kind: netboot.BootLocal},
		"52:54:00:77:00:04": {Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"},
	}
	booter := netboot.BooterFunc(func(_ context.Context, m netboot.Machine) (netboot.Decision, error) {
		if d, ok := decisions[m.MAC.String()]; ok {
			return d, nil
		}
		return netboot.Decision{}, netboot.ErrNotApproved
	})

	ts, err := tftp.New(tftp.Config{Addr: "127.0.0.1:0", Root: root, Timeout: time.Second})
	must(t, err)
	tAddr, err := ts.Listen()
	must(t, err)
	hs, err := New(Config{Addr: "127.0.0.1:0", Assets: fx.root.FS(), BootFiles: root, Booter: booter})
	must(t, err)
	hAddr, err := hs.Listen()
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- ts.Run(ctx) }()
	go func() { done <- hs.Run(ctx) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		}
	}()
	httpPort := hAddr.(*net.TCPAddr).Port
	client := &http.Client{Timeout: 10 * time.Second}

	fetchTFTP := func(name string) []byte {
		t.Helper()
		c, err := ptftp.NewClient(tAddr.String())
		must(t, err)
		c.SetBlockSize(1468)
		wt, err := c.Receive(name, "octet")
		if err != nil {
			t.Fatalf("TFTP %s: %v", name, err)
		}
		var b bytes.Buffer
		if _, err := wt.WriteTo(&b); err != nil {
			t.Fatalf("TFTP %s: %v", name, err)
		}
		return b.Bytes()
	}
	fetchHTTP := func(u string, wantCode int) []byte {
		t.Helper()
		resp, err := client.Get(u)
		must(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		must(t, err)
		if resp.StatusCode != wantCode {
			t.Fatalf("GET %s = %d, want %d: %q", u, resp.StatusCode, wantCode, trunc(b))
		}
		return b
	}
	urlRE := regexp.MustCompile(`^(?:kernel|initrd|chain|sanboot --no-describe) (http://\S+)`)

	tests := []struct {
		name string
		req  dhcp.Request
		mac  string
	}{
		{"bios pxe", dhcp.Request{PXE: true, Arch: netboot.ArchBIOS}, "52:54:00:77:00:01"},
		{"uefi x64 pxe", dhcp.Request{PXE: true, Arch: netboot.ArchUEFIx64}, "52:54:00:77:00:01"},
		{"uefi x64 pxe alt", dhcp.Request{PXE: true, Arch: netboot.ArchUEFIx64Alt}, "52:54:00:77:00:01"},
		{"uefi arm64 pxe", dhcp.Request{PXE: true, Arch: netboot.ArchUEFIarm64}, "52:54:00:77:00:01"},
		{"uefi http x64", dhcp.Request{HTTPBoot: true, Arch: netboot.ArchUEFIHTTPx64}, "52:54:00:77:00:01"},
		{"uefi http arm64", dhcp.Request{HTTPBoot: true, Arch: netboot.ArchUEFIHTTParm64}, "52:54:00:77:00:01"},
		{"uefi http uki", dhcp.Request{HTTPBoot: true, Arch: netboot.ArchUEFIHTTPx64}, "52:54:00:77:00:02"},
		{"ipxe kernel", dhcp.Request{IPXE: true, PXE: true, Arch: netboot.ArchUEFIx64, UUID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"}, "52:54:00:77:00:01"},
		{"ipxe uki", dhcp.Request{IPXE: true, PXE: true, Arch: netboot.ArchUEFIx64}, "52:54:00:77:00:02"},
		{"ipxe local", dhcp.Request{IPXE: true, PXE: true, Arch: netboot.ArchBIOS}, "52:54:00:77:00:03"},
		{"uefi http enroll", dhcp.Request{HTTPBoot: true, Arch: netboot.ArchUEFIHTTPx64}, "52:54:00:77:00:04"},
		{"uefi pxe enroll", dhcp.Request{PXE: true, Arch: netboot.ArchUEFIx64}, "52:54:00:77:00:04"},
		{"ipxe enroll", dhcp.Request{IPXE: true, PXE: true, Arch: netboot.ArchUEFIx64}, "52:54:00:77:00:04"},
		{"ipxe unknown machine", dhcp.Request{IPXE: true, PXE: true, Arch: netboot.ArchBIOS}, "52:54:00:77:00:99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.MAC, _ = net.ParseMAC(tt.mac)
			d := decisions[tt.mac]
			b, err := dhcp.BootFor(tt.req, d, net.IPv4(127, 0, 0, 1), httpPort)
			must(t, err)
			switch {
			case b.TFTP:
				want, err := fs.ReadFile(root, b.File)
				if err != nil {
					t.Fatalf("DHCP advertises %q over TFTP, the boot root lacks it: %v", b.File, err)
				}
				if got := fetchTFTP(b.File); !bytes.Equal(got, want) || len(got) == 0 {
					t.Fatalf("TFTP %s: %d bytes, want %d", b.File, len(got), len(want))
				}
			case strings.Contains(b.File, "/ipxe?"):
				code := http.StatusOK
				if _, ok := decisions[tt.mac]; !ok {
					code = http.StatusForbidden
				}
				script := fetchHTTP(b.File, code)
				if !bytes.HasPrefix(script, []byte("#!ipxe\n")) {
					t.Fatalf("script %q", script)
				}
				urls := 0
				for line := range strings.SplitSeq(string(script), "\n") {
					if m := urlRE.FindStringSubmatch(line); m != nil {
						urls++
						asset := strings.TrimPrefix(m[1], "http://127.0.0.1:"+strconv.Itoa(httpPort)+"/assets/")
						if got := fetchHTTP(m[1], http.StatusOK); !bytes.Equal(got, fx.files[asset]) {
							t.Fatalf("script URL %s: %d bytes, want the %d of %s", m[1], len(got), len(fx.files[asset]), asset)
						}
					}
				}
				if want := map[netboot.DecisionKind]int{netboot.BootKernel: 2, netboot.BootUKI: 1, netboot.BootEnroll: 1}[d.Kind]; urls != want {
					t.Fatalf("script names %d asset URLs, want %d:\n%s", urls, want, script)
				}
			default:
				if got := fetchHTTP(b.File, http.StatusOK); len(got) == 0 {
					t.Fatalf("HTTP %s served nothing", b.File)
				}
				if d.Kind == netboot.BootEnroll {
					// UEFI HTTP boot mounts the ISO only when told its type.
					resp, err := client.Head(b.File)
					must(t, err)
					resp.Body.Close()
					if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.efi-iso" || !b.HTTPClient {
						t.Fatalf("HTTP boot of %s: Content-Type %q, option 60 HTTPClient %v; want application/vnd.efi-iso and true", b.File, ct, b.HTTPClient)
					}
				}
			}
		})
	}
}

// TestContractDebianGap documents what Debian's ipxe package cannot serve:
// the DHCP side advertises snp.efi to arm64 PXE clients, and BootFiles
// must say it is missing rather than fail silently.
func TestContractDebianGap(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		t.Skip("Debian package ipxe not installed; CI installs it")
	}
	root, missing, err := tftp.BootFiles("/usr/lib/ipxe")
	must(t, err)
	for _, name := range []string{dhcp.FileBIOS, dhcp.FileUEFIx64, dhcp.FileUEFIarm} {
		_, serr := fs.Stat(root, name)
		reported := false
		for _, m := range missing {
			reported = reported || strings.HasPrefix(m, name+" is missing")
		}
		if (serr == nil) == reported {
			t.Errorf("%s: served=%v reported missing=%v; want exactly one", name, serr == nil, reported)
		}
	}
}
