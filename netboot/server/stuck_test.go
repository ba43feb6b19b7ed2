package server

import (
	"strings"
	"testing"
	"time"

	"onramp/netboot"
)

func TestStuckWatch(t *testing.T) {
	t.Parallel()
	var rec netboot.Recorder
	now := time.Unix(1000, 0)
	w := newStuckWatch(&rec, time.Minute)
	w.now = func() time.Time { return now }

	// A refused iPXE: loaded over TFTP, no script → stuck once.
	w.Emit(netboot.Event{Kind: netboot.EventTFTPDone, MAC: "m1", File: "ipxe.efi", Bytes: 1000})
	// A size probe does not count.
	w.Emit(netboot.Event{Kind: netboot.EventTFTPDone, MAC: "m2", File: "ipxe.efi", Detail: "size probe"})
	// A healthy machine asks for its script.
	w.Emit(netboot.Event{Kind: netboot.EventTFTPDone, MAC: "m3", File: "undionly.kpxe", Bytes: 1000})
	w.Emit(netboot.Event{Kind: netboot.EventIPXEScript, MAC: "m3"})
	// HTTP boot of iPXE, then nothing.
	w.Emit(netboot.Event{Kind: netboot.EventHTTPDone, MAC: "m4", File: "/boot/ipxe.efi", Bytes: 1000})

	now = now.Add(30 * time.Second)
	// m1's firmware retries every 30 s: the retries must not postpone the report.
	w.Emit(netboot.Event{Kind: netboot.EventTFTPDone, MAC: "m1", File: "ipxe.efi", Bytes: 1000})
	w.check()
	now = now.Add(31 * time.Second)
	w.check()
	w.Emit(netboot.Event{Kind: netboot.EventTFTPDone, MAC: "m1", File: "ipxe.efi", Bytes: 1000})
	now = now.Add(31 * time.Second)
	w.check()

	stuck := map[string]string{}
	for _, e := range rec.Events() {
		if e.Kind == netboot.EventStuck {
			if _, dup := stuck[e.MAC]; dup {
				t.Errorf("%s reported stuck twice", e.MAC)
			}
			stuck[e.MAC] = e.Err
		}
	}
	if len(stuck) != 2 || stuck["m1"] == "" || stuck["m4"] == "" {
		t.Fatalf("stuck = %v, want m1 and m4", stuck)
	}
	if !strings.Contains(stuck["m1"], "stuck after TFTP") || !strings.Contains(stuck["m1"], "Access Denied") {
		t.Errorf("m1 reason: %s", stuck["m1"])
	}
	if !strings.Contains(stuck["m4"], "stuck after HTTP") {
		t.Errorf("m4 reason: %s", stuck["m4"])
	}
}
