package server

import (
	"context"
	"path"
	"sync"
	"time"

	"onramp/netboot"
)

// stuckWatch notices machines that stop between two boot stages and says
// why in plain words: the firmware downloaded iPXE but never asked for its
// boot script. The usual cause under SecureBoot is that the firmware refused
// the boot loader's signature ("Access Denied" on its screen), which Onramp
// cannot see on the network except as this silence.
type stuckWatch struct {
	next  netboot.Sink
	after time.Duration
	now   func() time.Time

	mu      sync.Mutex
	loaded  map[string]loaded // MAC → last iPXE binary download, not followed by a script
	flagged map[string]bool
}

type loaded struct {
	at   time.Time
	file string
	via  string // "TFTP" or "HTTP"
	ip   string
}

// maxWatched bounds the map against floods.
const maxWatched = 4096

func newStuckWatch(next netboot.Sink, after time.Duration) *stuckWatch {
	return &stuckWatch{next: next, after: after, now: time.Now, loaded: map[string]loaded{}, flagged: map[string]bool{}}
}

func isIPXEBinary(file string) bool {
	switch path.Base(file) {
	case "ipxe.efi", "snp.efi", "undionly.kpxe":
		return true
	}
	return false
}

func (w *stuckWatch) Emit(e netboot.Event) {
	w.next.Emit(e)
	if e.MAC == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case (e.Kind == netboot.EventTFTPDone || e.Kind == netboot.EventHTTPDone) && e.Bytes > 0 && isIPXEBinary(e.File):
		if len(w.loaded) >= maxWatched {
			clear(w.loaded)
		}
		via := "TFTP"
		if e.Kind == netboot.EventHTTPDone {
			via = "HTTP"
		}
		// Firmware that refuses iPXE often retries the same boot option in
		// a loop: keep the first download's time, so the retries cannot
		// postpone the report forever.
		if _, waiting := w.loaded[e.MAC]; !waiting {
			w.loaded[e.MAC] = loaded{at: w.now(), file: path.Base(e.File), via: via, ip: e.IP}
		}
	case e.Kind == netboot.EventIPXEScript:
		delete(w.loaded, e.MAC)
		delete(w.flagged, e.MAC)
	}
}

// Run checks every few seconds until ctx ends.
func (w *stuckWatch) Run(ctx context.Context) error {
	t := time.NewTicker(w.after / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.check()
		}
	}
}

func (w *stuckWatch) check() {
	now := w.now()
	var out []netboot.Event
	w.mu.Lock()
	for mac, l := range w.loaded {
		if w.flagged[mac] || now.Sub(l.at) < w.after {
			continue
		}
		w.flagged[mac] = true
		out = append(out, netboot.Event{
			Time: now, Kind: netboot.EventStuck, MAC: mac, IP: l.ip, File: l.file,
			Err: "stuck after " + l.via + ": the machine downloaded " + l.file + " but never started it (no boot script was asked for in " +
				w.after.String() + "). With SecureBoot on, the firmware refused the boot loader's signature (its screen says \"Access Denied\"): " +
				"put the firmware in setup mode and enroll the site's keys (SecureBoot step), or turn SecureBoot off for the install. " +
				"Without SecureBoot, look at the machine's screen for an iPXE error.",
		})
	}
	w.mu.Unlock()
	for _, e := range out {
		w.next.Emit(e)
	}
}
