package dhcp

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"onramp/netboot"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

var srvIP = net.IP{10, 77, 0, 1}

func req(arch netboot.Arch, vendor string, ipxe bool, uuid string) Request {
	return Request{Type: dhcpv4.MessageTypeDiscover, MAC: testMAC, XID: dhcpv4.TransactionID{9, 8, 7, 6}, Arch: arch, UUID: uuid,
		VendorClass: vendor, PXE: len(vendor) >= 9 && vendor[:9] == "PXEClient", HTTPBoot: len(vendor) >= 10 && vendor[:10] == "HTTPClient", IPXE: ipxe}
}

func TestBootFor(t *testing.T) {
	t.Parallel()
	kernel := netboot.Decision{Kind: netboot.BootKernel}
	uki := netboot.Decision{Kind: netboot.BootUKI, UKI: "talos/v1.14.1/amd64/uki signed.efi"}
	enroll := netboot.Decision{Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"}
	cases := []struct {
		name    string
		r       Request
		d       netboot.Decision
		want    Boot
		wantErr bool
	}{
		{"bios", req(netboot.ArchBIOS, "PXEClient:Arch:00000", false, ""), kernel, Boot{File: "undionly.kpxe", TFTP: true}, false},
		{"uefi x64", req(netboot.ArchUEFIx64, "PXEClient:Arch:00007", false, ""), kernel, Boot{File: "ipxe.efi", TFTP: true}, false},
		{"uefi x64 alt", req(netboot.ArchUEFIx64Alt, "PXEClient:Arch:00009", false, ""), kernel, Boot{File: "ipxe.efi", TFTP: true}, false},
		{"uefi arm64", req(netboot.ArchUEFIarm64, "PXEClient:Arch:00011", false, ""), kernel, Boot{File: "snp.efi", TFTP: true}, false},
		{"ia32 unsupported", req(netboot.ArchUEFIx86, "PXEClient:Arch:00006", false, ""), kernel, Boot{}, true},
		{"http x64", req(netboot.ArchUEFIHTTPx64, "HTTPClient:Arch:00016", false, ""), kernel, Boot{File: "http://10.77.0.1:8080/boot/ipxe.efi", HTTPClient: true}, false},
		{"http arm64", req(netboot.ArchUEFIHTTParm64, "HTTPClient:Arch:00019", false, ""), kernel, Boot{File: "http://10.77.0.1:8080/boot/snp.efi", HTTPClient: true}, false},
		{"http uki", req(netboot.ArchUEFIHTTPx64, "HTTPClient:Arch:00016", false, ""), uki, Boot{File: "http://10.77.0.1:8080/assets/talos/v1.14.1/amd64/uki%20signed.efi", HTTPClient: true}, false},
		{"ipxe", req(netboot.ArchUEFIx64, "PXEClient:Arch:00007", true, "4c4c4544-0042-1080-8033-b7c04f503532"), kernel,
			Boot{File: "http://10.77.0.1:8080/ipxe?arch=7&mac=52%3A54%3A00%3A12%3A34%3A56&uuid=4c4c4544-0042-1080-8033-b7c04f503532"}, false},
		{"ipxe no uuid", req(netboot.ArchBIOS, "PXEClient:Arch:00000", true, ""), kernel, Boot{File: "http://10.77.0.1:8080/ipxe?arch=0&mac=52%3A54%3A00%3A12%3A34%3A56"}, false},
		{"ipxe local still gets script", req(netboot.ArchBIOS, "", true, ""), netboot.Decision{Kind: netboot.BootLocal}, Boot{File: "http://10.77.0.1:8080/ipxe?arch=0&mac=52%3A54%3A00%3A12%3A34%3A56"}, false},
		{"firmware local", req(netboot.ArchBIOS, "PXEClient:Arch:00000", false, ""), netboot.Decision{Kind: netboot.BootLocal}, Boot{}, true},
		{"not a boot client", req(netboot.ArchUnknown, "udhcp 1.35", false, ""), kernel, Boot{}, true},
		// SecureBoot key enrollment: HTTP boot gets the ISO itself; PXE
		// firmware cannot load an ISO over TFTP and gets iPXE, whose
		// script sanboots it; iPXE gets its script URL as always.
		{"http enroll", req(netboot.ArchUEFIHTTPx64, "HTTPClient:Arch:00016", false, ""), enroll, Boot{File: "http://10.77.0.1:8080/assets/secureboot/enroll.iso", HTTPClient: true}, false},
		{"pxe enroll gets ipxe", req(netboot.ArchUEFIx64, "PXEClient:Arch:00007", false, ""), enroll, Boot{File: "ipxe.efi", TFTP: true}, false},
		{"ipxe enroll gets script", req(netboot.ArchUEFIx64, "iPXE", true, ""), enroll, Boot{File: "http://10.77.0.1:8080/ipxe?arch=7&mac=52%3A54%3A00%3A12%3A34%3A56"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := BootFor(c.r, c.d, srvIP, 8080)
			if (err != nil) != c.wantErr || (err != nil && !errors.Is(err, ErrNoBootFile)) {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("BootFor (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReplies builds each kind of reply, checks the firmware-facing rules
// and compares the decoded packet with a golden file (-update rewrites).
func TestReplies(t *testing.T) {
	t.Parallel()
	lease := Lease{ServerIP: srvIP, YourIP: net.IP{10, 77, 0, 100}, Mask: net.CIDRMask(24, 32), LeaseTime: time.Hour, DNS: []net.IP{srvIP}}
	uefi := req(netboot.ArchUEFIx64, "PXEClient:Arch:00007:UNDI:003016", false, "")
	bootUEFI := Boot{File: FileUEFIx64, TFTP: true}
	httpReq := req(netboot.ArchUEFIHTTPx64, "HTTPClient:Arch:00016:UNDI:003001", false, "")
	bootHTTP, _ := BootFor(httpReq, netboot.Decision{}, srvIP, 8080)
	bootEnroll, err := BootFor(httpReq, netboot.Decision{Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"}, srvIP, 8080)
	if err != nil {
		t.Fatal(err)
	}
	relayed := uefi
	relayed.GIAddr, relayed.Relayed = net.IP{10, 77, 0, 2}, true
	renew := uefi
	renew.Type, renew.CIAddr = dhcpv4.MessageTypeRequest, net.IP{10, 77, 0, 100}

	type check struct {
		yiaddr, proxy, http bool
	}
	cases := []struct {
		name   string
		pkt    *dhcpv4.DHCPv4
		r      Request
		c      check
		wantTo string
	}{
		{"offer-uefi", BuildOffer(uefi, lease, bootUEFI), uefi, check{yiaddr: true}, "255.255.255.255:68"},
		{"ack-uefi-renew", BuildAck(renew, lease, bootUEFI), renew, check{yiaddr: true}, "10.77.0.100:68"},
		{"offer-relayed", BuildOffer(relayed, lease, bootUEFI), relayed, check{yiaddr: true}, "10.77.0.2:67"},
		{"offer-http", BuildOffer(httpReq, lease, bootHTTP), httpReq, check{yiaddr: true, http: true}, "255.255.255.255:68"},
		{"offer-plain", BuildOffer(req(netboot.ArchUnknown, "", false, ""), lease, Boot{}), req(netboot.ArchUnknown, "", false, ""), check{yiaddr: true}, "255.255.255.255:68"},
		{"nak", BuildNak(renew, srvIP, "address 10.77.0.100 refused"), renew, check{}, "255.255.255.255:68"},
		{"proxy-offer-uefi", BuildProxyOffer(uefi, srvIP, bootUEFI), uefi, check{proxy: true}, "255.255.255.255:68"},
		{"proxy-offer-http", BuildProxyOffer(httpReq, srvIP, bootHTTP), httpReq, check{http: true}, "255.255.255.255:68"},
		{"offer-http-enroll", BuildOffer(httpReq, lease, bootEnroll), httpReq, check{yiaddr: true, http: true}, "255.255.255.255:68"},
		{"proxy-offer-http-enroll", BuildProxyOffer(httpReq, srvIP, bootEnroll), httpReq, check{http: true}, "255.255.255.255:68"},
		{"proxy-ack-4011", BuildProxyAck(renew, srvIP, bootUEFI), renew, check{proxy: true}, "10.77.0.100:68"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := dhcpv4.FromBytes(c.pkt.ToBytes())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if p.TransactionID != c.r.XID || p.ClientHWAddr.String() != c.r.MAC.String() || p.OpCode != dhcpv4.OpcodeBootReply {
				t.Errorf("xid/mac/op not echoed: %s", p.Summary())
			}
			if !p.ServerIdentifier().Equal(srvIP) {
				t.Errorf("server id %v", p.ServerIdentifier())
			}
			vc := p.ClassIdentifier()
			hasLease := p.Options.Has(dhcpv4.OptionIPAddressLeaseTime)
			switch {
			case c.c.yiaddr:
				// EDK2 rejects a full offer carrying PXEClient (PXE-E16).
				if p.YourIPAddr.IsUnspecified() || !hasLease || vc == "PXEClient" {
					t.Errorf("full reply: yiaddr=%v lease=%v option60=%q", p.YourIPAddr, hasLease, vc)
				}
			case c.c.proxy:
				if !p.YourIPAddr.IsUnspecified() || hasLease || p.Options.Has(dhcpv4.OptionSubnetMask) || vc != "PXEClient" ||
					string(p.Options.Get(dhcpv4.OptionVendorSpecificInformation)) != string([]byte{6, 1, 8, 255}) {
					t.Errorf("proxy reply: yiaddr=%v lease=%v option60=%q option43=%x", p.YourIPAddr, hasLease, vc, p.Options.Get(dhcpv4.OptionVendorSpecificInformation))
				}
			}
			if c.c.http && vc != "HTTPClient" {
				t.Errorf("HTTP boot reply without option 60 HTTPClient: %q", vc)
			}
			if got := ReplyAddr(c.r, p).String(); got != c.wantTo {
				t.Errorf("reply goes to %s, want %s", got, c.wantTo)
			}
			golden(t, filepath.Join("testdata", "replies", c.name+".golden"), p.Summary())
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}
