package dhcp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrCorruptLeases means the lease file is damaged somewhere other than its
// last record, so leases after the damage cannot be trusted or recovered.
// The server refuses to start rather than forget them and hand an address to
// two machines. A torn last record (a crash during a write) is dropped, as
// it was never acknowledged.
var ErrCorruptLeases = errors.New("lease file is corrupt")

// The lease file is an append-only journal, one record a line:
//
//	<crc32-ieee of the JSON, 8 hex digits> <JSON record>\n
//
// A binding is appended and fsync'd before the DHCPACK that announces it is
// sent, so a crash (even kill -9) never loses an acknowledged lease. The
// journal is compacted (rewritten to a temporary file, fsync'd, renamed over
// the old one, directory fsync'd) when it grows past 4× the live bindings.
type leaseRecord struct {
	Op      string `json:"op"` // "bind" or "free"
	MAC     string `json:"mac"`
	IP      string `json:"ip,omitempty"`
	Expires int64  `json:"exp,omitempty"` // Unix seconds
}

type binding struct {
	mac     string
	ip      uint32
	expires time.Time
}

// leaseStore holds the bindings and their journal. The maps are guarded by
// the caller (the pool's mutex); the journal has its own lock so that the
// slow part, fsync, runs outside the pool's lock, and concurrent commits
// share one fsync (group commit): the first waiter writes and syncs every
// queued record, the others wait for it.
type leaseStore struct {
	path  string
	byMAC map[string]*binding
	byIP  map[uint32]*binding
	// Recovered counts torn trailing records dropped at open.
	Recovered int

	lock *os.File // path+".lock", flock'd while open

	jmu      sync.Mutex
	jcond    *sync.Cond
	f        *os.File
	records  int    // lines in the journal file
	queue    []byte // records applied in memory, not yet written
	queued   int    // records in queue
	seq      uint64 // sequence number of the last queued record
	durable  uint64 // every record up to this one is on disk
	flushing bool
	failedTo uint64 // records up to this one failed to reach disk
	ferr     error
}

func ip4u(ip net.IP) uint32 {
	v := ip.To4()
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func u2ip(u uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, u)
	return ip
}

func encodeRecord(r leaseRecord) []byte {
	j, _ := json.Marshal(r) // a struct of strings and ints cannot fail
	return fmt.Appendf(nil, "%08x %s\n", crc32.ChecksumIEEE(j), j)
}

func decodeRecord(line []byte) (leaseRecord, error) {
	var r leaseRecord
	if len(line) < 10 || line[8] != ' ' {
		return r, errors.New("short line")
	}
	sum, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil {
		return r, fmt.Errorf("parse checksum: %w", err)
	}
	body := line[9:]
	if crc32.ChecksumIEEE(body) != uint32(sum) {
		return r, errors.New("checksum mismatch")
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("parse record: %w", err)
	}
	if _, err := net.ParseMAC(r.MAC); err != nil {
		return r, fmt.Errorf("parse record mac: %w", err)
	}
	if r.Op == "bind" && net.ParseIP(r.IP).To4() == nil {
		return r, fmt.Errorf("parse record ip %q", r.IP)
	}
	if r.Op != "bind" && r.Op != "free" {
		return r, fmt.Errorf("unknown op %q", r.Op)
	}
	return r, nil
}

// openLeaseStore reads (or creates) the journal at path.
func openLeaseStore(path string) (*leaseStore, error) {
	s := &leaseStore{path: path, byMAC: map[string]*binding{}, byIP: map[uint32]*binding{}}
	s.jcond = sync.NewCond(&s.jmu)
	// One writer per lease file: a second Onramp on the same data directory
	// would interleave records and hand out the same addresses.
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lease lock file: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock lease file %s (is another Onramp running with the same data directory?): %w", path, err)
	}
	s.lock = lock
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open lease file: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		lock.Close()
		return nil, fmt.Errorf("read lease file %s: %w", path, err)
	}
	valid := 0 // bytes of the valid prefix
	lineNo := 0
	for rest := data; len(rest) > 0; {
		lineNo++
		i := bytes.IndexByte(rest, '\n')
		var line []byte
		if i < 0 {
			line = rest // no newline: a torn last write
		} else {
			line = rest[:i]
		}
		rec, derr := decodeRecord(line)
		if i < 0 && derr == nil {
			derr = errors.New("record not terminated")
		}
		if derr != nil {
			if i < 0 || len(bytes.TrimSpace(rest[i+1:])) == 0 {
				// The last record is torn: it was never fsync'd in full, so
				// never acknowledged. Drop it and go on.
				s.Recovered++
				break
			}
			f.Close()
			lock.Close()
			return nil, fmt.Errorf("read lease file %s line %d: %w: %v (move the file aside to start with no leases, at the risk of duplicate addresses until old leases expire)", path, lineNo, ErrCorruptLeases, derr)
		}
		s.apply(rec)
		s.records++
		rest = rest[i+1:]
		valid += i + 1
	}
	if valid != len(data) {
		if err := f.Truncate(int64(valid)); err != nil {
			f.Close()
			lock.Close()
			return nil, fmt.Errorf("truncate torn lease record: %w", err)
		}
	}
	if _, err := f.Seek(int64(valid), io.SeekStart); err != nil {
		f.Close()
		lock.Close()
		return nil, fmt.Errorf("seek lease file: %w", err)
	}
	s.f = f
	if s.needsCompaction() {
		if err := s.compact(); err != nil {
			s.f.Close()
			lock.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *leaseStore) apply(r leaseRecord) {
	if old := s.byMAC[r.MAC]; old != nil {
		delete(s.byIP, old.ip)
		delete(s.byMAC, r.MAC)
	}
	if r.Op != "bind" {
		return
	}
	ip := ip4u(net.ParseIP(r.IP))
	if other := s.byIP[ip]; other != nil {
		delete(s.byMAC, other.mac) // the address moved to a new owner
	}
	b := &binding{mac: r.MAC, ip: ip, expires: time.Unix(r.Expires, 0)}
	s.byMAC[r.MAC] = b
	s.byIP[ip] = b
}

// enqueue applies r in memory and queues it for the journal; the caller
// holds the pool's lock. It returns the ticket to wait on.
func (s *leaseStore) enqueue(r leaseRecord) uint64 {
	s.apply(r)
	s.jmu.Lock()
	defer s.jmu.Unlock()
	s.queue = append(s.queue, encodeRecord(r)...)
	s.queued++
	s.seq++
	return s.seq
}

// wait returns once record seq is on disk (fsync'd), writing and syncing
// every queued record itself if no other goroutine is doing so. It must be
// called without the pool's lock.
func (s *leaseStore) wait(seq uint64) error {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	for s.durable < seq {
		if seq <= s.failedTo {
			return s.ferr
		}
		if s.flushing {
			s.jcond.Wait()
			continue
		}
		s.flushing = true
		data, n, upto := s.queue, s.queued, s.seq
		s.queue, s.queued = nil, 0
		f := s.f
		s.jmu.Unlock()
		_, err := f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		s.jmu.Lock()
		s.flushing = false
		if err != nil {
			s.failedTo, s.ferr = upto, fmt.Errorf("write lease file: %w", err)
		} else {
			s.durable = upto
			s.records += n
		}
		s.jcond.Broadcast()
	}
	return nil
}

func (s *leaseStore) needsCompaction() bool {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	return s.records+s.queued > 4*len(s.byMAC)+64
}

// bind and free make one record durable; for callers that hold no other lock.
func (s *leaseStore) bind(mac string, ip net.IP, expires time.Time) error {
	if err := s.wait(s.enqueue(leaseRecord{Op: "bind", MAC: mac, IP: ip.To4().String(), Expires: expires.Unix()})); err != nil {
		return err
	}
	if s.needsCompaction() {
		return s.compact()
	}
	return nil
}

func (s *leaseStore) free(mac string) error {
	if s.byMAC[mac] == nil {
		return nil
	}
	return s.wait(s.enqueue(leaseRecord{Op: "free", MAC: mac}))
}

// compact rewrites the journal with one record per live binding,
// atomically. The caller holds the pool's lock (the maps are stable and hold
// every queued record, which the rewrite makes durable).
func (s *leaseStore) compact() error {
	s.jmu.Lock()
	for s.flushing {
		s.jcond.Wait()
	}
	s.flushing = true
	s.jmu.Unlock()
	err := s.rewrite()
	s.jmu.Lock()
	s.flushing = false
	if err == nil {
		s.queue, s.queued, s.durable = nil, 0, s.seq
		s.records = len(s.byMAC)
	}
	s.jcond.Broadcast()
	s.jmu.Unlock()
	return err
}

func (s *leaseStore) rewrite() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("compact lease file: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, b := range s.byMAC {
		w.Write(encodeRecord(leaseRecord{Op: "bind", MAC: b.mac, IP: u2ip(b.ip).String(), Expires: b.expires.Unix()}))
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact lease file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	nf, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("reopen lease file: %w", err)
	}
	s.f.Close()
	s.f = nf
	return nil
}

func (s *leaseStore) Close() error {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	s.lock.Close() // releases the flock
	return err
}
