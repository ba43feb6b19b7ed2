// Package nettest is the test plumbing the netboot packages share for their
// real-peer tests in network namespaces: running a command (failing the test
// with its output), capturing packets with tshark, and a goroutine-safe
// buffer for a child process's output. Only tests import it.
package nettest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sh runs args and returns its stdout; on failure the test fails with the
// command, its error and its output.
func Sh(t testing.TB, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// LockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Capture runs tshark on iface in namespace ns (with capture filter
// filter, "" for everything) until the returned stop is called, or the test
// ends. It returns the pcap path. Without tshark the test is skipped.
func Capture(t testing.TB, ns, iface, filter string) (pcap string, stop func()) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("needs tshark (a real peer; install the Debian package)")
	}
	pcap = filepath.Join(t.TempDir(), "capture.pcap")
	// tshark may drop privileges before writing: make the file writable.
	if f, err := os.Create(pcap); err == nil {
		f.Close()
		os.Chmod(pcap, 0o666)
	}
	args := []string{"netns", "exec", ns, "tshark", "-q", "-i", iface, "-w", pcap}
	if filter != "" {
		args = append(args, "-f", filter)
	}
	cmd := exec.Command("ip", args...)
	stderr := &LockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tshark: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "Capturing on"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("tshark did not start:\n%s", stderr.String())
		}
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		time.Sleep(300 * time.Millisecond) // let the last packets land
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	return pcap, stop
}
