package events

import (
	"errors"
	"fmt"
	"strings"

	"github.com/siderolabs/siderolink/api/events"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/protobuf/proto"

	"onramp/netboot"
)

// Event kinds on a machine's timeline.
const (
	// EventTalos is a Talos runtime event received on the event sink.
	EventTalos netboot.EventKind = "talos.event"
	// EventKmsg is one kernel log line received on the kmsg endpoint.
	EventKmsg netboot.EventKind = "talos.kmsg"
)

// Record is what one Talos event says, in plain words.
type Record struct {
	Type   string            // Talos message type, e.g. "MachineStatusEvent"
	Detail string            // e.g. "stage: installing"
	Err    string            // set for error events (ConfigLoadErrorEvent, a failed sequence, ...)
	Attrs  map[string]string // always has "type"; "stage" and "ready" for MachineStatusEvent
}

// ErrUnknownType is returned by Decode for a payload that is not one of the
// machine.* events Talos publishes.
var ErrUnknownType = errors.New("unknown event type")

// maxField bounds each string taken from a payload.
const maxField = 512

// Decode turns a published event into a Record. The Any's type URL may be
// "talos/runtime/machine.X" or "type.googleapis.com/machine.X": only the
// part after the last '/' counts.
func Decode(req *events.EventRequest) (Record, error) {
	data := req.GetData()
	if data == nil {
		return Record{}, errors.New("decode event: no data")
	}
	url := data.GetTypeUrl()
	full := url[strings.LastIndexByte(url, '/')+1:]
	name, ok := strings.CutPrefix(full, "machine.")
	if !ok {
		return Record{}, fmt.Errorf("decode event %q: %w", clip(url), ErrUnknownType)
	}
	var msg proto.Message
	switch name {
	case "MachineStatusEvent":
		msg = &machine.MachineStatusEvent{}
	case "SequenceEvent":
		msg = &machine.SequenceEvent{}
	case "PhaseEvent":
		msg = &machine.PhaseEvent{}
	case "TaskEvent":
		msg = &machine.TaskEvent{}
	case "ServiceStateEvent":
		msg = &machine.ServiceStateEvent{}
	case "ConfigLoadErrorEvent":
		msg = &machine.ConfigLoadErrorEvent{}
	case "ConfigValidationErrorEvent":
		msg = &machine.ConfigValidationErrorEvent{}
	case "AddressEvent":
		msg = &machine.AddressEvent{}
	case "RestartEvent":
		msg = &machine.RestartEvent{}
	default:
		return Record{}, fmt.Errorf("decode event %q: %w", clip(url), ErrUnknownType)
	}
	if err := proto.Unmarshal(data.GetValue(), msg); err != nil {
		return Record{}, fmt.Errorf("decode event %s: %w", name, err)
	}
	r := Record{Type: name, Attrs: map[string]string{"type": name}}
	describe(&r, msg)
	r.Detail, r.Err = clip(r.Detail), clip(r.Err)
	return r, nil
}

// describe fills Detail, Err and Attrs from a decoded message.
func describe(r *Record, msg proto.Message) {
	switch m := msg.(type) {
	case *machine.MachineStatusEvent:
		stage := strings.ToLower(m.GetStage().String())
		ready := m.GetStatus().GetReady()
		r.Attrs["stage"] = stage
		r.Attrs["ready"] = fmt.Sprint(ready)
		r.Detail = "stage: " + stage
		var unmet []string
		for _, c := range m.GetStatus().GetUnmetConditions() {
			unmet = append(unmet, clip(c.GetName())+": "+clip(c.GetReason()))
		}
		if len(unmet) > 0 {
			r.Detail += "; waiting for " + strings.Join(unmet, ", ")
		}
	case *machine.SequenceEvent:
		r.Attrs["sequence"] = clip(m.GetSequence())
		r.Detail = "sequence " + m.GetSequence() + ": " + actionWords(m.GetAction().String())
		if e := m.GetError(); e != nil && (e.GetMessage() != "" || e.GetCode() != 0) {
			r.Err = "sequence " + m.GetSequence() + " failed: " + e.GetMessage()
		}
	case *machine.PhaseEvent:
		r.Attrs["phase"] = clip(m.GetPhase())
		r.Detail = "phase " + m.GetPhase() + ": " + actionWords(m.GetAction().String())
	case *machine.TaskEvent:
		r.Attrs["task"] = clip(m.GetTask())
		r.Detail = "task " + m.GetTask() + ": " + actionWords(m.GetAction().String())
	case *machine.ServiceStateEvent:
		state := strings.ToLower(m.GetAction().String())
		r.Attrs["service"] = clip(m.GetService())
		r.Attrs["state"] = state
		r.Detail = "service " + m.GetService() + ": " + state
		if msg := m.GetMessage(); msg != "" {
			r.Detail += " (" + msg + ")"
		}
		if h := m.GetHealth(); h != nil && !h.GetUnknown() {
			r.Attrs["healthy"] = fmt.Sprint(h.GetHealthy())
		}
		if m.GetAction() == machine.ServiceStateEvent_FAILED {
			r.Err = "service " + m.GetService() + " failed: " + m.GetMessage()
		}
	case *machine.ConfigLoadErrorEvent:
		r.Detail = "config load error"
		r.Err = "config load error: " + m.GetError()
	case *machine.ConfigValidationErrorEvent:
		r.Detail = "config validation error"
		r.Err = "config validation error: " + m.GetError()
	case *machine.AddressEvent:
		r.Detail = "addresses: " + strings.Join(m.GetAddresses(), ", ")
		if h := m.GetHostname(); h != "" {
			r.Attrs["hostname"] = clip(h)
			r.Detail = "hostname " + h + ", " + r.Detail
		}
	case *machine.RestartEvent:
		r.Detail = fmt.Sprintf("restart requested (command %d)", m.GetCmd())
	}
}

// actionWords turns START/STOP/NOOP into words.
func actionWords(a string) string {
	switch a {
	case "START":
		return "running"
	case "STOP":
		return "done"
	case "NOOP":
		return "nothing to do"
	}
	return strings.ToLower(a)
}

// clip bounds s to maxField bytes without splitting a UTF-8 sequence.
func clip(s string) string { return truncate(s, maxField) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 { // continuation byte
		i--
	}
	return s[:i]
}
