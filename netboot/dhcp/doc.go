// Package dhcp is Onramp's DHCPv4 side of network boot: a full DHCP server for
// an isolated cart network, a proxyDHCP server for a network whose own DHCP
// server keeps assigning addresses, a probe that lists the DHCP servers on a
// network, and a watcher that raises an alarm when a foreign server appears.
//
// Protocols: DHCP (RFC 2131, options RFC 2132), the PXE extensions (RFC 4578:
// options 93 client architecture, 94 network interface id, 97 machine UUID;
// Intel PXE 2.1: option 60 "PXEClient", option 43 vendor sub-options, and
// proxyDHCP boot-server discovery on UDP port 4011), user class (RFC 3004,
// iPXE sends option 77 "iPXE" without the RFC 3004 length prefix), and UEFI HTTP
// boot (UEFI 2.5+ §24.7: vendor class "HTTPClient", arch 16/19, the boot file
// is a URL).
//
// The code is shaped classify → decide → encode: Classify turns a packet into
// a Request, the reply builders (BuildOffer, BuildAck, BuildNak, BuildProxyOffer,
// BuildProxyAck) turn a Request plus a decision into a packet, and both are pure
// functions tested on bytes alone. Server holds the sockets, the lease store
// and the question to the app (netboot.Booter) in between. The package never
// decides which machine boots what.
//
// Safety: every socket is bound to the chosen interface with SO_BINDTODEVICE
// (a socket bound to the interface's address would not see broadcasts), so
// nothing is ever answered on another interface.
package dhcp
