package dhcp

import (
	"errors"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"onramp/netboot"
)

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func mustPkt(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}),
		dhcpv4.WithHwAddr(testMAC),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
	}
	p, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var testUUID = append([]byte{0}, 0x4c, 0x4c, 0x45, 0x44, 0, 0x42, 0x10, 0x80, 0x80, 0x33, 0xb7, 0xc0, 0x4f, 0x50, 0x35, 0x32)

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		mods    []dhcpv4.Modifier
		raw     func(*dhcpv4.DHCPv4)
		want    Request
		wantErr error
	}{
		{name: "plain discover", want: Request{Type: dhcpv4.MessageTypeDiscover, Arch: netboot.ArchUnknown}},
		{
			name: "bios pxe",
			mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)), dhcpv4.WithBroadcast(true)},
			want: Request{Type: dhcpv4.MessageTypeDiscover, Arch: netboot.ArchBIOS, VendorClass: "PXEClient:Arch:00000:UNDI:002001", PXE: true, Broadcast: true},
		},
		{
			name: "uefi x64 with uuid",
			mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7))),
				dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testUUID)},
			want: Request{Type: dhcpv4.MessageTypeDiscover, Arch: netboot.ArchUEFIx64, UUID: "44454c4c-4200-8010-8033-b7c04f503532", VendorClass: "PXEClient:Arch:00007:UNDI:003016", PXE: true},
		},
		{
			name: "uefi http boot",
			mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))},
			want: Request{Type: dhcpv4.MessageTypeDiscover, Arch: netboot.ArchUEFIHTTPx64, VendorClass: "HTTPClient:Arch:00016:UNDI:003001", HTTPBoot: true},
		},
		{
			name: "ipxe raw user class",
			mods: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7))), dhcpv4.WithUserClass("iPXE", false)},
			want: Request{Type: dhcpv4.MessageTypeDiscover, Arch: netboot.ArchUEFIx64, VendorClass: "PXEClient:Arch:00007:UNDI:003010", PXE: true, IPXE: true, UserClass: []string{"iPXE"}},
		},
		{
			name: "ipxe rfc3004 user class",
			mods: []dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", true)},
			want: Request{Type: dhcpv4.MessageTypeDiscover, Arch: netboot.ArchUnknown, IPXE: true, UserClass: []string{"iPXE"}},
		},
		{
			name: "relayed request",
			mods: []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithGatewayIP(net.IP{10, 77, 0, 2}),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP{10, 77, 0, 100})), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP{10, 77, 0, 1}))},
			want: Request{Type: dhcpv4.MessageTypeRequest, Arch: netboot.ArchUnknown, Relayed: true, GIAddr: net.IP{10, 77, 0, 2}, RequestedIP: net.IP{10, 77, 0, 100}, ServerID: net.IP{10, 77, 0, 1}},
		},
		{name: "reply", raw: func(p *dhcpv4.DHCPv4) { p.OpCode = dhcpv4.OpcodeBootReply }, wantErr: ErrNotRequest},
		{name: "bootp", raw: func(p *dhcpv4.DHCPv4) { p.Options.Del(dhcpv4.OptionDHCPMessageType) }, wantErr: ErrNoMsgType},
		{name: "long hw addr", raw: func(p *dhcpv4.DHCPv4) { p.ClientHWAddr = make(net.HardwareAddr, 8); p.ClientHWAddr[0] = 1 }, wantErr: ErrBadHWAddr},
		{name: "zero mac", raw: func(p *dhcpv4.DHCPv4) { p.ClientHWAddr = make(net.HardwareAddr, 6) }, wantErr: ErrBadHWAddr},
		{name: "odd arch", mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7, 1})}, wantErr: ErrBadArch},
		{name: "short uuid", mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2})}, wantErr: ErrBadUUID},
		{name: "bad requested ip", mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionRequestedIPAddress, []byte{10, 0})}, wantErr: ErrBadRequested},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := mustPkt(t, c.mods...)
			if c.raw != nil {
				c.raw(p)
			}
			// Classify what came off the wire, not the builder's struct.
			p, err := dhcpv4.FromBytes(p.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			got, err := Classify(p)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.want.MAC, c.want.XID = testMAC, dhcpv4.TransactionID{1, 2, 3, 4}
			if diff := cmp.Diff(c.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Classify (-want +got):\n%s", diff)
			}
		})
	}
}
