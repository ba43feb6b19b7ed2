package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// errTimeout ends a transfer whose client stopped answering.
var errTimeout = errors.New("no acknowledgement from the client")

// chunkSize is how much of the file one ReadAt fetches (rounded up to whole
// windows of blocks), so a block costs no read syscall of its own.
const chunkSize = 64 << 10

// xfer is the state of one read transfer on its connected socket.
type xfer struct {
	conn    transferConn
	retries int
	timeout time.Duration

	ra      io.ReaderAt
	size    int64
	blksize int
	window  int
	blocks  int64 // blocks in the file: size/blksize + 1 (the last is short, maybe empty)
	acked   int64 // blocks acknowledged

	chunk    []byte // file bytes [chunkOff, chunkOff+len(chunk))
	chunkOff int64
	pkt      []byte // outgoing packet
	in       []byte // incoming packet
}

func (t *xfer) init(ra io.ReaderAt, size int64, blksize, window int) {
	t.ra, t.size, t.blksize, t.window = ra, size, blksize, window
	t.blocks = size/int64(blksize) + 1
	n := max(chunkSize/blksize, window)
	// Round to whole windows so a window rarely straddles two chunks.
	n = (n + window - 1) / window * window
	t.chunk = make([]byte, 0, n*blksize)
	t.chunkOff = -1
	t.pkt = make([]byte, 0, 4+blksize)
	t.in = make([]byte, 4+maxBlockSize) // a client may send anything; read it whole
}

// sendOACK sends the option acknowledgement until the client acknowledges
// it with ACK 0 (or answers with an ERROR: a size probe).
func (t *xfer) sendOACK(opts []option) error {
	t.pkt = appendOACK(t.pkt[:0], opts)
	oack := append([]byte(nil), t.pkt...)
	for try := 0; try < t.retries; try++ {
		if err := t.conn.write(oack); err != nil {
			return fmt.Errorf("send option acknowledgement: %w", err)
		}
		deadline := time.Now().Add(t.timeout)
		for {
			blk, err := t.readACK(deadline)
			if err != nil {
				if errors.Is(err, errTimeout) {
					break
				}
				return err
			}
			if blk == 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("send option acknowledgement: %w", errTimeout)
}

// send sends the file, a window at a time, and returns the bytes the
// client acknowledged.
func (t *xfer) send() (int64, error) {
	tries := 0
	for t.acked < t.blocks {
		if tries == t.retries {
			return t.ackedBytes(), fmt.Errorf("send block %d: %w", t.acked+1, errTimeout)
		}
		tries++
		last := min(t.acked+int64(t.window), t.blocks)
		for k := t.acked + 1; k <= last; k++ {
			if err := t.sendBlock(k); err != nil {
				return t.ackedBytes(), err
			}
		}
		deadline := time.Now().Add(t.timeout)
		for {
			blk, err := t.readACK(deadline)
			if errors.Is(err, errTimeout) {
				break // resend the window
			}
			if err != nil {
				return t.ackedBytes(), err
			}
			// Map the 16-bit block number into (acked, last]: block
			// numbers wrap at 65536.
			k := t.acked + int64(uint16(blk-uint16(t.acked)))
			if k <= t.acked || k > last {
				continue // duplicate or stray ACK: wait on, send nothing
			}
			t.acked = k
			tries = 0
			break
		}
	}
	return t.ackedBytes(), nil
}

func (t *xfer) ackedBytes() int64 {
	return min(t.acked*int64(t.blksize), t.size)
}

// sendBlock sends block k (1-based) from the chunk cache.
func (t *xfer) sendBlock(k int64) error {
	off := (k - 1) * int64(t.blksize)
	n := int(min(int64(t.blksize), t.size-off))
	if off < t.chunkOff || off+int64(n) > t.chunkOff+int64(len(t.chunk)) {
		if err := t.fill(off); err != nil {
			return err
		}
	}
	i := int(off - t.chunkOff)
	t.pkt = binary.BigEndian.AppendUint16(t.pkt[:0], opDATA)
	t.pkt = binary.BigEndian.AppendUint16(t.pkt, uint16(k))
	t.pkt = append(t.pkt, t.chunk[i:i+n]...)
	if err := t.conn.write(t.pkt); err != nil {
		return fmt.Errorf("send block %d: %w", k, err)
	}
	return nil
}

// fill reads the chunk that starts at off.
func (t *xfer) fill(off int64) error {
	want := min(int64(cap(t.chunk)), t.size-off)
	t.chunk = t.chunk[:want]
	n, err := t.ra.ReadAt(t.chunk, off)
	if int64(n) == want {
		err = nil
	}
	t.chunk = t.chunk[:n]
	t.chunkOff = off
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the file shrank under us
		}
		return fmt.Errorf("read file at %d: %w", off, err)
	}
	return nil
}

// readACK waits until deadline for an ACK and returns its block number.
// Other opcodes are ignored, an ERROR ends the transfer. The socket's
// receive timeout is the transfer's timeout, so a wait can run past
// deadline by up to one timeout when stray packets keep arriving; the
// clock is read only then, not per packet.
func (t *xfer) readACK(deadline time.Time) (uint16, error) {
	for {
		n, err := t.conn.read(t.in)
		switch {
		case errors.Is(err, errTimeout):
			return 0, errTimeout
		case errors.Is(err, net.ErrClosed):
			return 0, err
		case err != nil:
			// ECONNREFUSED from an ICMP port unreachable: the client is
			// gone or not yet listening; treat it like silence.
		case n >= 4 && binary.BigEndian.Uint16(t.in) == opACK:
			return binary.BigEndian.Uint16(t.in[2:]), nil
		case n >= 4 && binary.BigEndian.Uint16(t.in) == opERROR:
			pe, _ := parseError(t.in[:n])
			return 0, pe
		}
		if time.Now().After(deadline) {
			return 0, errTimeout
		}
	}
}

// sequentialReaderAt serves ReadAt from an fs.File that only reads
// forward: forward reads and re-reads of the last chunk. A resend that
// reaches further back fails the transfer (the client retries). Files from
// os-backed fs.FS implementations are io.ReaderAt and never use this.
type sequentialReaderAt struct {
	r   io.Reader
	pos int64
	buf []byte // last bytes read, from pos-len(buf)
}

func (s *sequentialReaderAt) ReadAt(p []byte, off int64) (int, error) {
	start := s.pos - int64(len(s.buf))
	if off >= start && off+int64(len(p)) <= s.pos {
		return copy(p, s.buf[off-start:]), nil
	}
	if off < s.pos {
		return 0, errors.New("file cannot seek backwards")
	}
	if off > s.pos {
		if _, err := io.CopyN(io.Discard, s.r, off-s.pos); err != nil {
			return 0, err
		}
		s.pos = off
	}
	n, err := io.ReadFull(s.r, p)
	s.pos += int64(n)
	s.buf = append(s.buf[:0], p[:n]...)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}
