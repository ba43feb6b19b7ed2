package cli

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"

	"onramp/netboot"
)

// flushAfter is how long an event may wait in jsonLines' buffer. A rack
// that boots at once makes thousands of events a second (four per DHCP
// exchange); one write per event was 9% of `onramp netboot`'s CPU under
// perfdhcp. A reader (the app's lab, a script) sees them at most this late.
const flushAfter = 20 * time.Millisecond

// jsonLines writes each netboot event as one JSON line, buffered: written
// out flushAfter after the first event that found the buffer empty, and by
// Close.
type jsonLines struct {
	mu     sync.Mutex
	w      *bufio.Writer
	enc    *json.Encoder
	timer  *time.Timer
	armed  bool
	closed bool
}

func newJSONLines(w io.Writer) *jsonLines {
	j := &jsonLines{w: bufio.NewWriterSize(w, 64<<10)}
	j.enc = json.NewEncoder(j.w)
	j.timer = time.AfterFunc(time.Hour, j.flush)
	j.timer.Stop()
	return j
}

func (j *jsonLines) Emit(e netboot.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	j.enc.Encode(e)
	if !j.armed {
		j.armed = true
		j.timer.Reset(flushAfter)
	}
}

func (j *jsonLines) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.armed = false
	j.w.Flush()
}

// Close writes out what is buffered; later events are dropped.
func (j *jsonLines) Close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.timer.Stop()
	j.closed = true
	j.w.Flush()
}
