package dhcp

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"onramp/netboot"
)

// FuzzClassify: bytes → parse → classify → every reply. Properties: no
// panic; every reply built for a classified request parses back with the
// same xid and MAC, and a full offer never carries option 60 PXEClient.
func FuzzClassify(f *testing.F) {
	seeds := []*dhcpv4.DHCPv4{
		mustPkt(f),
		mustPkt(f, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))),
		mustPkt(f, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(16))),
			dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testUUID)),
		mustPkt(f, dhcpv4.WithUserClass("iPXE", false), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7))), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithGatewayIP(net.IP{10, 77, 0, 2}), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP{10, 77, 0, 100}))),
	}
	for _, s := range seeds {
		f.Add(s.ToBytes())
	}
	lease := Lease{ServerIP: srvIP, YourIP: net.IP{10, 77, 0, 100}, Mask: net.CIDRMask(24, 32), LeaseTime: time.Hour}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		r, err := Classify(p)
		if err != nil {
			return
		}
		decisions := []netboot.Decision{{Kind: netboot.BootKernel}, {Kind: netboot.BootUKI, UKI: "a/b c.efi"}, {Kind: netboot.BootLocal}}
		for _, d := range decisions {
			boot, _ := BootFor(r, d, srvIP, 8080)
			for _, reply := range []*dhcpv4.DHCPv4{
				BuildOffer(r, lease, boot), BuildAck(r, lease, boot), BuildNak(r, srvIP, "no"),
				BuildProxyOffer(r, srvIP, boot), BuildProxyAck(r, srvIP, boot),
			} {
				back, err := dhcpv4.FromBytes(reply.ToBytes())
				if err != nil {
					t.Fatalf("reply does not parse: %v\n%s", err, reply.Summary())
				}
				if back.TransactionID != r.XID || back.ClientHWAddr.String() != r.MAC.String() {
					t.Fatalf("reply xid/mac %s/%s, want %s/%s", back.TransactionID, back.ClientHWAddr, r.XID, r.MAC)
				}
				if !back.YourIPAddr.IsUnspecified() && back.ClassIdentifier() == "PXEClient" {
					t.Fatalf("full reply carries option 60 PXEClient (EDK2 PXE-E16)")
				}
				ReplyAddr(r, back)
			}
		}
	})
}
