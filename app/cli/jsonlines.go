package cli

import (
	"encoding/json"
	"io"
	"sync"

	"onramp/netboot"
)

// jsonLines writes each netboot event as one JSON line.
type jsonLines struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newJSONLines(w io.Writer) *jsonLines { return &jsonLines{enc: json.NewEncoder(w)} }

func (j *jsonLines) Emit(e netboot.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.enc.Encode(e)
}
