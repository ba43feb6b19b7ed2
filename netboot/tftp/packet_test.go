package tftp

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func rawRequest(op uint16, fields ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, op)
	for _, f := range fields {
		b = append(b, f...)
		b = append(b, 0)
	}
	return b
}

func TestParseRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pkt     []byte
		want    request
		wantErr bool
	}{
		{"plain", rawRequest(opRRQ, "ipxe.efi", "octet"), request{op: opRRQ, filename: "ipxe.efi", mode: "octet"}, false},
		{"mode case", rawRequest(opRRQ, "a", "OCTET"), request{op: opRRQ, filename: "a", mode: "octet"}, false},
		{"options", rawRequest(opRRQ, "/ipxe.efi", "octet", "tsize", "0", "BLKSIZE", "1468", "windowsize", "4"),
			request{op: opRRQ, filename: "/ipxe.efi", mode: "octet", options: []option{{"tsize", "0"}, {"blksize", "1468"}, {"windowsize", "4"}}}, false},
		{"duplicate option keeps first", rawRequest(opRRQ, "a", "octet", "blksize", "512", "blksize", "9000"),
			request{op: opRRQ, filename: "a", mode: "octet", options: []option{{"blksize", "512"}}}, false},
		{"dangling option name", rawRequest(opRRQ, "a", "octet", "blksize"), request{op: opRRQ, filename: "a", mode: "octet"}, false},
		{"write request", rawRequest(opWRQ, "x", "octet"), request{op: opWRQ, filename: "x", mode: "octet"}, false},
		{"empty", nil, request{}, true},
		{"opcode only", []byte{0, 1}, request{}, true},
		{"not a request", rawRequest(opACK, "a", "octet"), request{}, true},
		{"no terminator", append(rawRequest(opRRQ, "a"), "octet"...), request{}, true},
		{"no mode", rawRequest(opRRQ, "a"), request{}, true},
		{"empty name", rawRequest(opRRQ, "", "octet"), request{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseRequest(tt.pkt)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseRequest(%q) error = %v, want error %v", tt.pkt, err, tt.wantErr)
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(request{}, option{})); d != "" {
				t.Errorf("parseRequest(%q) (-want +got):\n%s", tt.pkt, d)
			}
		})
	}
}

func TestParseRequestBoundsOptions(t *testing.T) {
	t.Parallel()
	fields := []string{"a", "octet"}
	for i := range 100 {
		fields = append(fields, "opt"+strconv.Itoa(i), "1")
	}
	r, err := parseRequest(rawRequest(opRRQ, fields...))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.options) > maxOptions {
		t.Errorf("kept %d options, want at most %d", len(r.options), maxOptions)
	}
}

func TestNegotiate(t *testing.T) {
	t.Parallel()
	req := func(opts ...string) request {
		r := request{op: opRRQ, filename: "f", mode: "octet"}
		for i := 0; i+1 < len(opts); i += 2 {
			r.options = append(r.options, option{opts[i], opts[i+1]})
		}
		return r
	}
	tests := []struct {
		name string
		req  request
		want negotiated
	}{
		{"no options", req(), negotiated{blksize: 512, windowsize: 1, tsize: -1}},
		{"blksize capped", req("blksize", "9000"), negotiated{blksize: 1468, windowsize: 1, tsize: -1, oack: []option{{"blksize", "1468"}}}},
		{"blksize smaller", req("blksize", "1024"), negotiated{blksize: 1024, windowsize: 1, tsize: -1, oack: []option{{"blksize", "1024"}}}},
		{"blksize too small ignored", req("blksize", "7"), negotiated{blksize: 512, windowsize: 1, tsize: -1}},
		{"blksize too large ignored", req("blksize", "65465"), negotiated{blksize: 512, windowsize: 1, tsize: -1}},
		{"blksize junk ignored", req("blksize", "x"), negotiated{blksize: 512, windowsize: 1, tsize: -1}},
		{"tsize answered", req("tsize", "0"), negotiated{blksize: 512, windowsize: 1, tsize: 1 << 20, oack: []option{{"tsize", "1048576"}}}},
		{"windowsize", req("windowsize", "8"), negotiated{blksize: 512, windowsize: 8, tsize: -1, oack: []option{{"windowsize", "8"}}}},
		{"windowsize capped", req("windowsize", "65535"), negotiated{blksize: 512, windowsize: 64, tsize: -1, oack: []option{{"windowsize", "64"}}}},
		{"windowsize zero ignored", req("windowsize", "0"), negotiated{blksize: 512, windowsize: 1, tsize: -1}},
		{"timeout", req("timeout", "3"), negotiated{blksize: 512, windowsize: 1, timeoutS: 3, tsize: -1, oack: []option{{"timeout", "3"}}}},
		{"timeout out of range", req("timeout", "256"), negotiated{blksize: 512, windowsize: 1, tsize: -1}},
		{"unknown ignored", req("multicast", "", "blksize", "1468"), negotiated{blksize: 1468, windowsize: 1, tsize: -1, oack: []option{{"blksize", "1468"}}}},
		{"OVMF probe", req("tsize", "0", "blksize", "1468"), negotiated{blksize: 1468, windowsize: 1, tsize: 1 << 20, oack: []option{{"tsize", "1048576"}, {"blksize", "1468"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := negotiate(tt.req, 1<<20, 1468, 64)
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(negotiated{}, option{})); d != "" {
				t.Errorf("negotiate (-want +got):\n%s", d)
			}
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	oack := appendOACK(nil, []option{{"tsize", "5"}, {"blksize", "1468"}})
	if want := "\x00\x06tsize\x005\x00blksize\x001468\x00"; string(oack) != want {
		t.Errorf("OACK = %q, want %q", oack, want)
	}
	e := appendError(nil, errNotFound, "no\x00such file")
	pe, err := parseError(e)
	if err != nil {
		t.Fatal(err)
	}
	if pe.code != errNotFound || pe.msg != "no such file" {
		t.Errorf("error packet round trip = %+v", pe)
	}
	if long := appendError(nil, 0, strings.Repeat("x", 1000)); len(long) > 210 {
		t.Errorf("error packet of %d bytes, want it cut", len(long))
	}
}

// FuzzParseRequest checks properties of the request parser on any bytes:
// no panic; a parsed request is a read or write request with a file name
// and mode taken from the packet, at most maxOptions options with lower
// case unique names; and negotiation of it stays within the RFC ranges and
// the server's caps. The seed corpus is in testdata/fuzz/FuzzParseRequest.
func FuzzParseRequest(f *testing.F) {
	f.Add(rawRequest(opRRQ, "ipxe.efi", "octet"))
	f.Add(rawRequest(opRRQ, "/ipxe.efi", "octet", "tsize", "0", "blksize", "1468"))
	f.Add(rawRequest(opRRQ, "undionly.kpxe", "octet", "blksize", "1428", "windowsize", "64", "timeout", "1"))
	f.Add(rawRequest(opWRQ, "x", "netascii"))
	f.Add([]byte{0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		if r.op != opRRQ && r.op != opWRQ {
			t.Fatalf("parsed opcode %d", r.op)
		}
		if r.filename == "" || strings.Contains(r.filename, "\x00") || !bytes.Contains(b, []byte(r.filename)) {
			t.Fatalf("file name %q not from the packet", r.filename)
		}
		if r.mode != strings.ToLower(r.mode) {
			t.Fatalf("mode %q not lower case", r.mode)
		}
		if len(r.options) > maxOptions {
			t.Fatalf("%d options", len(r.options))
		}
		seen := map[string]bool{}
		for _, o := range r.options {
			if o.name == "" || o.name != strings.ToLower(o.name) || seen[o.name] {
				t.Fatalf("option name %q empty, not lower case or repeated", o.name)
			}
			seen[o.name] = true
		}
		n := negotiate(r, 12345, 1468, 64)
		if n.blksize < minBlockSize || n.blksize > 1468 || n.windowsize < 1 || n.windowsize > 64 || n.timeoutS < 0 || n.timeoutS > 255 {
			t.Fatalf("negotiated %+v outside the limits", n)
		}
		if n.tsize != -1 && n.tsize != 12345 {
			t.Fatalf("tsize %d, want the file size", n.tsize)
		}
		oack := appendOACK(nil, n.oack)
		if len(n.oack) > 0 && len(oack) > 512 {
			t.Fatalf("OACK of %d bytes", len(oack))
		}
	})
}
