package events

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/siderolabs/siderolink/api/events"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// talosRequest wraps msg as Talos' event sink controller does (anypb.New:
// "type.googleapis.com/machine.X").
func talosRequest(t testing.TB, msg proto.Message) *events.EventRequest {
	t.Helper()
	a, err := anypb.New(msg)
	if err != nil {
		t.Fatal(err)
	}
	return &events.EventRequest{Id: "d0000000000000000000", Data: a}
}

// runtimeRequest wraps msg with Talos' runtime type URL ("talos/runtime/machine.X").
func runtimeRequest(t testing.TB, msg proto.Message) *events.EventRequest {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return &events.EventRequest{Data: &anypb.Any{TypeUrl: "talos/runtime/" + string(msg.ProtoReflect().Descriptor().FullName()), Value: b}}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *events.EventRequest
		want Record
	}{
		{"machine status installing", talosRequest(t, &machine.MachineStatusEvent{Stage: machine.MachineStatusEvent_INSTALLING, Status: &machine.MachineStatusEvent_MachineStatus{}}),
			Record{Type: "MachineStatusEvent", Detail: "stage: installing", Attrs: map[string]string{"type": "MachineStatusEvent", "stage": "installing", "ready": "false"}}},
		{"machine status runtime URL", runtimeRequest(t, &machine.MachineStatusEvent{Stage: machine.MachineStatusEvent_RUNNING, Status: &machine.MachineStatusEvent_MachineStatus{Ready: true}}),
			Record{Type: "MachineStatusEvent", Detail: "stage: running", Attrs: map[string]string{"type": "MachineStatusEvent", "stage": "running", "ready": "true"}}},
		{"machine status shutting down, unmet", talosRequest(t, &machine.MachineStatusEvent{Stage: machine.MachineStatusEvent_SHUTTING_DOWN, Status: &machine.MachineStatusEvent_MachineStatus{
			UnmetConditions: []*machine.MachineStatusEvent_MachineStatus_UnmetCondition{{Name: "services", Reason: "etcd not healthy"}}}}),
			Record{Type: "MachineStatusEvent", Detail: "stage: shutting_down; waiting for services: etcd not healthy", Attrs: map[string]string{"type": "MachineStatusEvent", "stage": "shutting_down", "ready": "false"}}},
		{"machine status maintenance, no status", runtimeRequest(t, &machine.MachineStatusEvent{Stage: machine.MachineStatusEvent_MAINTENANCE}),
			Record{Type: "MachineStatusEvent", Detail: "stage: maintenance", Attrs: map[string]string{"type": "MachineStatusEvent", "stage": "maintenance", "ready": "false"}}},
		{"sequence start", talosRequest(t, &machine.SequenceEvent{Sequence: "install", Action: machine.SequenceEvent_START}),
			Record{Type: "SequenceEvent", Detail: "sequence install: running", Attrs: map[string]string{"type": "SequenceEvent", "sequence": "install"}}},
		{"sequence failed", talosRequest(t, &machine.SequenceEvent{Sequence: "boot", Action: machine.SequenceEvent_STOP, Error: &common.Error{Code: common.Code_FATAL, Message: "disk not found"}}),
			Record{Type: "SequenceEvent", Detail: "sequence boot: done", Err: "sequence boot failed: disk not found", Attrs: map[string]string{"type": "SequenceEvent", "sequence": "boot"}}},
		{"phase", talosRequest(t, &machine.PhaseEvent{Phase: "install", Action: machine.PhaseEvent_START}),
			Record{Type: "PhaseEvent", Detail: "phase install: running", Attrs: map[string]string{"type": "PhaseEvent", "phase": "install"}}},
		{"task stop", talosRequest(t, &machine.TaskEvent{Task: "upgradeOrInstall", Action: machine.TaskEvent_STOP}),
			Record{Type: "TaskEvent", Detail: "task upgradeOrInstall: done", Attrs: map[string]string{"type": "TaskEvent", "task": "upgradeOrInstall"}}},
		{"service running healthy", talosRequest(t, &machine.ServiceStateEvent{Service: "etcd", Action: machine.ServiceStateEvent_RUNNING, Message: "Health check successful", Health: &machine.ServiceHealth{Healthy: true}}),
			Record{Type: "ServiceStateEvent", Detail: "service etcd: running (Health check successful)", Attrs: map[string]string{"type": "ServiceStateEvent", "service": "etcd", "state": "running", "healthy": "true"}}},
		{"service failed", talosRequest(t, &machine.ServiceStateEvent{Service: "kubelet", Action: machine.ServiceStateEvent_FAILED, Message: "exit 1"}),
			Record{Type: "ServiceStateEvent", Detail: "service kubelet: failed (exit 1)", Err: "service kubelet failed: exit 1", Attrs: map[string]string{"type": "ServiceStateEvent", "service": "kubelet", "state": "failed"}}},
		{"config load error", talosRequest(t, &machine.ConfigLoadErrorEvent{Error: "yaml: line 3"}),
			Record{Type: "ConfigLoadErrorEvent", Detail: "config load error", Err: "config load error: yaml: line 3", Attrs: map[string]string{"type": "ConfigLoadErrorEvent"}}},
		{"config validation error", talosRequest(t, &machine.ConfigValidationErrorEvent{Error: "1 error occurred: install disk"}),
			Record{Type: "ConfigValidationErrorEvent", Detail: "config validation error", Err: "config validation error: 1 error occurred: install disk", Attrs: map[string]string{"type": "ConfigValidationErrorEvent"}}},
		{"address", talosRequest(t, &machine.AddressEvent{Hostname: "cp-1", Addresses: []string{"10.77.0.20", "fd77::20"}}),
			Record{Type: "AddressEvent", Detail: "hostname cp-1, addresses: 10.77.0.20, fd77::20", Attrs: map[string]string{"type": "AddressEvent", "hostname": "cp-1"}}},
		{"restart", talosRequest(t, &machine.RestartEvent{Cmd: 0x1234567}),
			Record{Type: "RestartEvent", Detail: "restart requested (command 19088743)", Attrs: map[string]string{"type": "RestartEvent"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode(tt.req)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Decode (-want +got):\n%s", d)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 600)
	tests := []struct {
		name    string
		req     *events.EventRequest
		unknown bool
	}{
		{"no data", &events.EventRequest{}, false},
		{"foreign type", talosRequest(t, &common.Error{Message: "x"}), true},
		{"unknown machine type", &events.EventRequest{Data: &anypb.Any{TypeUrl: "talos/runtime/machine.NoSuchEvent"}}, true},
		{"empty URL", &events.EventRequest{Data: &anypb.Any{Value: []byte{1, 2}}}, true},
		{"long URL", &events.EventRequest{Data: &anypb.Any{TypeUrl: long}}, true},
		{"garbage bytes", &events.EventRequest{Data: &anypb.Any{TypeUrl: "talos/runtime/machine.PhaseEvent", Value: []byte{0xff, 0xff, 0xff}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode(tt.req)
			if err == nil {
				t.Fatal("Decode accepted it")
			}
			if errors.Is(err, ErrUnknownType) != tt.unknown {
				t.Errorf("Decode: %v; unknown type = %v, want %v", err, errors.Is(err, ErrUnknownType), tt.unknown)
			}
			if len(err.Error()) > 2*maxField {
				t.Errorf("error not bounded: %d bytes", len(err.Error()))
			}
		})
	}
}

func TestDecodeBoundsFields(t *testing.T) {
	t.Parallel()
	r, err := Decode(talosRequest(t, &machine.ConfigLoadErrorEvent{Error: strings.Repeat("ü", 1000)}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Err) > maxField || !strings.HasPrefix(r.Err, "config load error: üü") || !utf8Valid(r.Err) {
		t.Errorf("Err not clipped on a rune boundary: %d bytes", len(r.Err))
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// talosKmsgLine is a line exactly as Talos' jsonLinesSender writes it for a
// KmsgLogDeliveryController event (keys sorted by encoding/json).
const talosKmsgLine = `{"clock":2345678,"facility":"kern","msg":"virtio_net virtio0 eth0: renamed","priority":"info","seq":412,"talos-level":"info","talos-time":"2026-11-29T15:30:01.123456789Z"}` + "\n"

func TestParseKmsg(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want KmsgRecord
		err  bool
	}{
		{"talos line", talosKmsgLine, KmsgRecord{Msg: "virtio_net virtio0 eth0: renamed", Facility: "kern", Priority: "info", Seq: 412, Clock: 2345678, TalosLevel: "info",
			TalosTime: time.Date(2026, 11, 29, 15, 30, 1, 123456789, time.UTC)}, false},
		{"only msg", `{"msg":"hello"}`, KmsgRecord{Msg: "hello", Seq: -1, Clock: -1}, false},
		{"unknown facility and priority dropped", `{"msg":"x","facility":"evil","priority":"<script>","seq":"12","clock":-5}`, KmsgRecord{Msg: "x", Seq: -1, Clock: -1}, false},
		{"extra fields kept out", `{"msg":"x","hostname":"n1","priority":"err"}`, KmsgRecord{Msg: "x", Priority: "err", Seq: -1, Clock: -1}, false},
		{"CRLF", "{\"msg\":\"a\"}\r\n", KmsgRecord{Msg: "a", Seq: -1, Clock: -1}, false},
		{"not JSON", "hello world\n", KmsgRecord{}, true},
		{"JSON array", `["msg"]`, KmsgRecord{}, true},
		{"truncated", `{"msg":"abc`, KmsgRecord{}, true},
		{"no msg", `{"facility":"kern"}`, KmsgRecord{}, true},
		{"msg not a string", `{"msg":42}`, KmsgRecord{}, true},
		{"empty", "\n", KmsgRecord{}, true},
		{"binary", "\x00\x01\xff{", KmsgRecord{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseKmsg([]byte(tt.line))
			if (err != nil) != tt.err {
				t.Fatalf("ParseKmsg(%q) error %v, want error %v", tt.line, err, tt.err)
			}
			if err != nil {
				if !errors.Is(err, ErrNotKmsg) {
					t.Errorf("error %v does not wrap ErrNotKmsg", err)
				}
				return
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ParseKmsg (-want +got):\n%s", d)
			}
		})
	}
}

// FuzzParseKmsg: never panics; what it accepts has a msg that round-trips
// and attributes only from the known sets.
func FuzzParseKmsg(f *testing.F) {
	f.Add([]byte(talosKmsgLine))
	f.Add([]byte(`{"msg":"x","priority":"warning"}`))
	f.Add([]byte(`{"msg":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseKmsg(b)
		if err != nil {
			return
		}
		if r.Facility != "" && !isOneOf(r.Facility, facilities) || r.Priority != "" && !isOneOf(r.Priority, priorities) {
			t.Fatalf("attribute outside the known sets: %+v", r)
		}
		if len(r.TalosLevel) > 16 {
			t.Fatalf("talos-level not bounded: %q", r.TalosLevel)
		}
	})
}
