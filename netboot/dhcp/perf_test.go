package dhcp

import (
	"context"
	"flag"
	"net"
	"onramp/netboot/nettest"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"onramp/netboot"
)

var (
	perfRate    = flag.Int("perfdhcp.rate", 50, "perfdhcp -r: DORA exchanges per second")
	perfClients = flag.Int("perfdhcp.clients", 200, "perfdhcp -R: distinct clients")
	perfSeconds = flag.Int("perfdhcp.seconds", 5, "perfdhcp -p: test period in seconds")
)

// TestPerfdhcpRelayed drives the isolated server with Kea's perfdhcp acting
// as a relay agent (giaddr set) from another namespace: a smoke run, no
// timing assertion; the figures are logged.
func TestPerfdhcpRelayed(t *testing.T) {
	t.Parallel()
	needBin(t, "perfdhcp")
	l := newIsolatedLab(t)
	nettest.Sh(t, "ip", "-n", l.C, "addr", "add", "10.77.0.2/16", "dev", l.cIf)
	nettest.Sh(t, "ip", "-n", l.S, "addr", "change", "10.77.0.1/16", "dev", l.sIf)
	_, subnet, _ := net.ParseCIDR("10.77.0.0/16")
	s, err := New(Config{
		Iface: l.sIf, Mode: Isolated, ServerIP: net.ParseIP("10.77.0.1"), Subnet: subnet,
		PoolStart: net.ParseIP("10.77.1.0"), PoolEnd: net.ParseIP("10.77.8.255"),
		LeaseFile: l.leaseFile, LeaseTime: time.Hour, Booter: testBooter(nil, nil), Sink: netboot.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, l.S, s)
	out := runPerfdhcp(t, l.C)
	m := regexp.MustCompile(`received packets: (\d+)`).FindAllSubmatch(out, -1)
	if len(m) < 2 {
		t.Fatalf("perfdhcp printed no received counts")
	}
	offers, _ := strconv.Atoi(string(m[0][1]))
	acks, _ := strconv.Atoi(string(m[1][1]))
	if min := *perfRate * *perfSeconds / 3; offers < min || acks < min {
		t.Errorf("perfdhcp got %d offers and %d acks in %d s at %d/s, want at least %d of each", offers, acks, *perfSeconds, *perfRate, min)
	}
}

func runPerfdhcp(t *testing.T, ns string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(*perfSeconds+25)*time.Second)
	defer cancel()
	args := []string{"netns", "exec", ns, "perfdhcp", "-4", "-l", "10.77.0.2", "-r", strconv.Itoa(*perfRate), "-R", strconv.Itoa(*perfClients), "-p", strconv.Itoa(*perfSeconds), "-W", "500000", "10.77.0.1"}
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	t.Logf("perfdhcp %v:\n%s", args[3:], out)
	// perfdhcp exits 3 when packets were dropped; that is reported, not fatal here.
	if err != nil && ctx.Err() != nil {
		t.Fatalf("perfdhcp: %v", err)
	}
	return out
}

var perfKea = flag.Bool("perfdhcp.kea", false, "also run TestPerfdhcpKea: the same load against kea-dhcp4 (memfile), for comparison")

// TestPerfdhcpKea runs the same perfdhcp load against kea-dhcp4 with a
// memfile lease file, on the same kind of veth pair (only with -perfdhcp.kea).
func TestPerfdhcpKea(t *testing.T) {
	if !*perfKea {
		t.Skip("comparison run: pass -perfdhcp.kea")
	}
	needBin(t, "perfdhcp")
	l := newLab(t)
	K, C := l.ns("k"), l.ns("c")
	kIf, cIf := l.link(K, "k0", C, "c0")
	nettest.Sh(t, "ip", "-n", K, "addr", "add", "10.77.0.1/16", "dev", kIf)
	nettest.Sh(t, "ip", "-n", C, "addr", "add", "10.77.0.2/16", "dev", cIf)
	startKea(t, K, kIf, "10.77.0.0/16", "10.77.1.0 - 10.77.8.255")
	runPerfdhcp(t, C)
}
