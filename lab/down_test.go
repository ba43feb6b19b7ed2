package lab

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"onramp/lab/netns"
)

// TestDownAfterCrash leaves what a killed `lab up` leaves (lab.json saying
// running with a dead PID, the namespace, a process inside it) and checks
// that Down removes all of it and is idempotent.
func TestDownAfterCrash(t *testing.T) {
	t.Parallel()
	needRoot(t, "ip", "sleep")
	ctx := t.Context()
	ns := nsName()
	t.Cleanup(func() { _ = netns.Destroy(context.Background(), ns) })
	if err := netns.Create(ctx, netns.Config{Name: ns, Taps: []string{"tap0"}}); err != nil {
		t.Fatal(err)
	}
	stray := netns.Command(context.Background(), ns, "sleep", "300")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stray.Process.Kill() })
	exited := make(chan struct{})
	go func() { stray.Wait(); close(exited) }()
	data := t.TempDir()
	if err := WriteState(data, &State{PID: 1 << 22, Running: true, NetNS: ns, Machines: []MachineState{{Machine: NewMachine(1, FirmwareBIOS, "", false, 0), Dir: data}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let ip exec sleep inside the namespace
	for i := range 2 {
		if err := Down(ctx, data, "obl-unused"); err != nil {
			t.Fatalf("Down #%d: %v", i+1, err)
		}
	}
	if netns.Exists(ns) {
		t.Error("namespace still there after Down")
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("stray process in the lab namespace survived Down")
	}
	st, err := ReadState(data)
	if err != nil || st.Running {
		t.Errorf("state after Down: %+v, %v", st, err)
	}
	if _, err := os.Stat(data); err != nil {
		t.Errorf("Down removed the data dir: %v", err)
	}
}

// TestLabRunLeavesNothing runs a one-machine lab without netboot, stops it,
// and checks that no goroutine, namespace or runtime directory is left.
// Not parallel: goleak must not see other tests' goroutines.
func TestLabRunLeavesNothing(t *testing.T) {
	needRoot(t, "ip")
	needQEMU(t)
	guestKit(t) // outside the leak window: it may start nothing, but be sure
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	data := t.TempDir()
	ns := nsName()
	l, err := New(Config{DataDir: data, CacheDir: testCacheDir(), NetNS: ns,
		Machines: []Machine{NewMachine(1, FirmwareUEFI, "", true, 64<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-l.Ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	// Let QEMU and swtpm start for real before stopping them.
	for i := 0; i < 100 && !fileExists(filepath.Join(data, "machines", "lab-1", "serial.log")); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if pids, _ := netns.Pids(ctx, ns); len(pids) < 2 {
		t.Errorf("want QEMU and swtpm in the namespace, found pids %v", pids)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return")
	}
	if netns.Exists(ns) {
		t.Error("namespace left")
	}
	if fileExists(RuntimeDir(ns)) {
		t.Error("runtime dir left")
	}
}
