// Package reliability holds Onramp's process-level reliability suite: the
// whole boot service (DHCP, RFC 2131; TFTP, RFC 1350/2347/2348/2349; HTTP)
// runs as a child process inside a network namespace the test creates, and
// real peers and hostile load generators hit it from other namespaces.
//
// The cases are the ones the protocol packages' own tests cannot reach:
// a malformed-packet storm while a real client (busybox udhcpc) keeps
// getting leases, a DHCP flood from random MACs with an allowlist on,
// kill -9 under load and restart from the lease journal, interface safety
// of all three services at once (tshark on the interface not chosen), the
// path-traversal matrix through the real servers, and slow clients and
// Range storms on HTTP.
//
// `go test ./netboot/reliability` runs the short form (well under two
// minutes, skipped without root or the peers). The long form runs with
// `-long` or ONRAMP_SOAK=1 (`make soak`): bigger counts, strict restart time.
package reliability
