package dhcp

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// TestRunLeavesNothing (not parallel, so it runs alone): after Run returns,
// no goroutine, socket or lease file descriptor is left behind.
func TestRunLeavesNothing(t *testing.T) {
	l := newIsolatedLab(t)
	before := openFDs(t)
	stop := startServer(t, l.S, l.newServer())
	if env := udhcpc(t, l.C, l.cIf, "02:00:00:00:04:01"); env == nil {
		t.Fatal("no lease")
	}
	if during := openFDs(t); during < before+2 {
		t.Errorf("%d descriptors while running, %d before: the count proves nothing", during, before)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	after := openFDs(t)
	for deadline := time.Now().Add(2 * time.Second); after != before && time.Now().Before(deadline); after = openFDs(t) {
		runtime.GC() // descriptors of finished child processes are released by finalizers
		time.Sleep(50 * time.Millisecond)
	}
	if after != before {
		t.Errorf("%d descriptors after Run returned, %d before: %v", after, before, fdTargets())
	}
	goleak.VerifyNone(t)
}

// TestSecondServerRefused: a second server on the same interface fails to
// start with a clear error instead of sharing the port.
func TestSecondServerRefused(t *testing.T) {
	t.Parallel()
	l := newIsolatedLab(t)
	startServer(t, l.S, l.newServer())
	second := l.newServer()
	err := inNetns(l.S, func() error { return second.Run(t.Context()) })
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second server: err = %v, want address already in use", err)
	}
}

func fdTargets() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return out
}

// TestServerNeedsItsAddress: Run refuses an interface without ServerIP.
func TestServerNeedsItsAddress(t *testing.T) {
	t.Parallel()
	l := newIsolatedLab(t)
	s, err := New(Config{Iface: l.sIf, ServerIP: net.ParseIP("10.77.0.9"), LeaseFile: l.leaseFile, Booter: testBooter(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	err = inNetns(l.S, func() error { return s.Run(t.Context()) })
	if err == nil || !strings.Contains(err.Error(), "does not have address 10.77.0.9") {
		t.Fatalf("err = %v", err)
	}
}
