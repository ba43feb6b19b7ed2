package node_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"onramp/talos/node"
)

// TestRetriesAreBounded: a node that refuses connections is tried exactly the
// configured number of times, with each retry reported.
func TestRetriesAreBounded(t *testing.T) {
	t.Parallel()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	addr := l.Addr().String()
	l.Close()

	var retries int

	start := time.Now()

	_, err = node.Maintenance(t.Context(), addr, node.WithRetry(3, 20*time.Millisecond),
		node.WithProgress(func(p node.Progress) {
			if p.Message == "retrying" && p.Step == "connect" {
				retries++
			}
		}))
	if err == nil || !strings.Contains(err.Error(), "connect "+addr) {
		t.Fatalf("Maintenance to a closed port = %v", err)
	}

	if retries != 2 {
		t.Errorf("retries reported = %d, want 2 (3 attempts)", retries)
	}

	if d := time.Since(start); d < 60*time.Millisecond || d > 5*time.Second {
		t.Errorf("3 attempts with 20ms, 40ms backoff took %s", d)
	}
}
