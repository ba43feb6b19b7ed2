package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TFTP opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   uint16 = 1
	opWRQ   uint16 = 2
	opDATA  uint16 = 3
	opACK   uint16 = 4
	opERROR uint16 = 5
	opOACK  uint16 = 6
)

// TFTP error codes (RFC 1350, RFC 2347).
const (
	errUndefined    uint16 = 0
	errNotFound     uint16 = 1
	errAccess       uint16 = 2
	errIllegalOp    uint16 = 4
	errOptionRefuse uint16 = 8
)

// Option limits. blksize (RFC 2348) is 8..65464; windowsize (RFC 7440)
// 1..65535; timeout (RFC 2349) 1..255 seconds.
const (
	minBlockSize  = 8
	maxBlockSize  = 65464
	maxWindowSize = 65535
	// maxOptions bounds the options read from one request; real clients
	// send at most four.
	maxOptions = 16
)

// errMalformed is wrapped by every parse error.
var errMalformed = errors.New("malformed tftp packet")

// request is a parsed RRQ or WRQ.
type request struct {
	op       uint16
	filename string // as sent: Sanitize it before use
	mode     string // lower case
	// options in the order sent, names lower case; a repeated name keeps
	// its first value.
	options []option
}

type option struct{ name, value string }

func (r *request) option(name string) (string, bool) {
	for _, o := range r.options {
		if o.name == name {
			return o.value, true
		}
	}
	return "", false
}

// parseRequest decodes a read or write request:
//
//	opcode(2) filename NUL mode NUL [option NUL value NUL]...
//
// A trailing option name without a value is ignored (some clients pad).
func parseRequest(b []byte) (request, error) {
	if len(b) < 2 {
		return request{}, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	op := binary.BigEndian.Uint16(b)
	if op != opRRQ && op != opWRQ {
		return request{}, fmt.Errorf("%w: opcode %d is not a request", errMalformed, op)
	}
	fields, err := cstrings(b[2:])
	if err != nil {
		return request{}, err
	}
	if len(fields) < 2 {
		return request{}, fmt.Errorf("%w: no mode", errMalformed)
	}
	if fields[0] == "" {
		return request{}, fmt.Errorf("%w: empty file name", errMalformed)
	}
	r := request{op: op, filename: fields[0], mode: strings.ToLower(fields[1])}
	for i := 2; i+1 < len(fields); i += 2 {
		name := strings.ToLower(fields[i])
		if _, dup := r.option(name); dup || name == "" {
			continue
		}
		if len(r.options) == maxOptions {
			break
		}
		r.options = append(r.options, option{name, fields[i+1]})
	}
	return r, nil
}

// cstrings splits NUL-terminated strings; the last one must be terminated.
func cstrings(b []byte) ([]string, error) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return nil, fmt.Errorf("%w: last field not NUL-terminated", errMalformed)
	}
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		out = append(out, string(b[:i]))
		b = b[i+1:]
		if len(out) > 2+2*maxOptions+2 {
			break // more fields than any request needs
		}
	}
	return out, nil
}

// negotiated is what the server agreed to for one transfer.
type negotiated struct {
	blksize    int
	windowsize int
	timeoutS   int   // 0 = the server's own
	tsize      int64 // -1 = not asked
	oack       []option
}

// negotiate applies RFC 2347 option negotiation to a read request for a
// file of size bytes. Options the server does not know, or values outside
// their RFC's range, are left out of the OACK (the client then uses the
// default, as RFC 2347 says). An empty oack means: no OACK, send DATA 1.
func negotiate(r request, size int64, maxBlk, maxWin int) negotiated {
	n := negotiated{blksize: 512, windowsize: 1, tsize: -1}
	for _, o := range r.options {
		v, err := strconv.Atoi(o.value)
		switch o.name {
		case "blksize":
			if err != nil || v < minBlockSize || v > maxBlockSize {
				continue
			}
			n.blksize = min(v, maxBlk)
			n.oack = append(n.oack, option{o.name, strconv.Itoa(n.blksize)})
		case "windowsize":
			if err != nil || v < 1 || v > maxWindowSize {
				continue
			}
			n.windowsize = min(v, maxWin)
			n.oack = append(n.oack, option{o.name, strconv.Itoa(n.windowsize)})
		case "timeout":
			if err != nil || v < 1 || v > 255 {
				continue
			}
			n.timeoutS = v
			n.oack = append(n.oack, option{o.name, strconv.Itoa(v)})
		case "tsize":
			// A read request sends 0; the answer is the file's size.
			if err != nil || v < 0 {
				continue
			}
			n.tsize = size
			n.oack = append(n.oack, option{o.name, strconv.FormatInt(size, 10)})
		}
	}
	return n
}

// appendOACK encodes an option acknowledgement.
func appendOACK(b []byte, opts []option) []byte {
	b = binary.BigEndian.AppendUint16(b, opOACK)
	for _, o := range opts {
		b = append(b, o.name...)
		b = append(b, 0)
		b = append(b, o.value...)
		b = append(b, 0)
	}
	return b
}

// appendError encodes an ERROR packet; msg is cut to keep the packet small.
func appendError(b []byte, code uint16, msg string) []byte {
	if len(msg) > 200 {
		msg = msg[:200]
	}
	msg = strings.ReplaceAll(msg, "\x00", " ")
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, msg...)
	return append(b, 0)
}

// peerError is an ERROR packet received from the client.
type peerError struct {
	code uint16
	msg  string
}

func (e *peerError) Error() string {
	return fmt.Sprintf("client sent error code=%d: %s", e.code, printable(e.msg))
}

// parseError decodes an ERROR packet; a missing NUL is tolerated.
func parseError(b []byte) (*peerError, error) {
	if len(b) < 4 || binary.BigEndian.Uint16(b) != opERROR {
		return nil, fmt.Errorf("%w: not an error packet", errMalformed)
	}
	msg := b[4:]
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	return &peerError{code: binary.BigEndian.Uint16(b[2:]), msg: string(msg)}, nil
}
