package cli

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"onramp/netboot"
	"onramp/netboot/nettest"
)

// lines parses what was written so far, one event a line.
func lines(t *testing.T, out *nettest.LockedBuffer) []netboot.Event {
	t.Helper()
	var got []netboot.Event
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var e netboot.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, e)
	}
	return got
}

// Buffered events reach the reader without Close, within flushAfter and a
// margin, in order, one JSON object per line; Close writes the rest and
// drops what comes after it.
func TestJSONLinesFlush(t *testing.T) {
	t.Parallel()
	var out nettest.LockedBuffer
	j := newJSONLines(&out)
	for k := range 100 {
		j.Emit(netboot.Event{Kind: netboot.EventDHCPAck, MAC: "52:54:00:00:00:01", IP: "10.77.0." + string(rune('0'+k%10))})
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(lines(t, &out)) < 100 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := lines(t, &out); len(got) != 100 {
		t.Fatalf("%d events written without Close, want 100", len(got))
	}
	j.Emit(netboot.Event{Kind: netboot.EventDHCPOffer})
	j.Close()
	got := lines(t, &out)
	if len(got) != 101 || got[100].Kind != netboot.EventDHCPOffer {
		t.Fatalf("after Close: %d events, last %+v", len(got), got[len(got)-1])
	}
	j.Emit(netboot.Event{Kind: netboot.EventDHCPAck})
	time.Sleep(2 * flushAfter)
	if n := len(lines(t, &out)); n != 101 {
		t.Errorf("an event after Close was written (%d lines)", n)
	}
}

// Emitters on several goroutines and the flush timer share the buffer
// (run with -race).
func TestJSONLinesConcurrent(t *testing.T) {
	t.Parallel()
	j := newJSONLines(io.Discard)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				j.Emit(netboot.Event{Kind: netboot.EventDHCPDiscover})
			}
		})
	}
	wg.Wait()
	j.Close()
}
