package tftp

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// loop runs crowded transfers (more than get a thread each) on one
// goroutine: epoll over their sockets, an ACK in, the next window out. No
// goroutine is parked or woken per block, so a block costs an epoll_wait
// shared with the other transfers that are ready, one read and one write,
// less than through Go's netpoller (read, EAGAIN, park, wake, read).
//
// A transfer's goroutine hands its xfer and socket over (run) and waits for
// the result; the loop owns both until it answers. Files are read on the
// loop, a chunk of 64 KiB or more at a time: boot files are in the page
// cache after the first machine, so that costs a copy, not a disk seek.
type loop struct {
	epfd int
	evfd int          // eventfd: wakes epoll_wait for new jobs and stop
	load atomic.Int32 // jobs handed over and not yet answered

	mu       sync.Mutex
	incoming []*job
	stopped  bool
}

// job is one transfer's state on a loop: what send and sendOACK keep in
// local variables.
type job struct {
	t        *xfer
	d        *dgram
	oack     []byte // the option acknowledgement while it is unacknowledged
	tries    int    // windows (or OACKs) sent without progress
	last     int64  // last block of the window in flight
	deadline time.Time
	done     chan error
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("tftp loop: epoll: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("tftp loop: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("tftp loop: epoll add: %w", err)
	}
	return &loop{epfd: epfd, evfd: evfd}, nil
}

// run serves t on the loop and returns how it ended: oack, if not nil, is
// sent first and must be acknowledged with ACK 0. d must be t's socket; it
// is made non-blocking.
func (l *loop) run(t *xfer, d *dgram, oack []byte) error {
	if err := unix.SetNonblock(d.fd, true); err != nil {
		return fmt.Errorf("hand transfer to the loop: %w", err)
	}
	j := &job{t: t, d: d, oack: oack, done: make(chan error, 1)}
	l.load.Add(1)
	defer l.load.Add(-1)
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return net.ErrClosed
	}
	l.incoming = append(l.incoming, j)
	l.mu.Unlock()
	l.wake()
	return <-j.done
}

func (l *loop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(l.evfd, one[:]) // EAGAIN: the counter is already non-zero, a wake-up is pending
}

// stop ends the loop once it has no jobs; run answers net.ErrClosed after.
func (l *loop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.wake()
}

// serve is the loop's goroutine. It returns, closing its descriptors,
// after stop once every job has been answered.
func (l *loop) serve() {
	defer unix.Close(l.evfd)
	defer unix.Close(l.epfd)
	events := make([]unix.EpollEvent, 64)
	jobs := map[int32]*job{}
	var next time.Time // no job's deadline is before next
	for {
		wait := -1
		if len(jobs) > 0 {
			wait = 0
			if d := time.Until(next); d > 0 {
				wait = int((d + time.Millisecond - 1) / time.Millisecond)
			}
		}
		n, err := unix.EpollWait(l.epfd, events, wait)
		if err != nil && err != unix.EINTR {
			// Only a bug makes epoll_wait fail; answer everyone rather
			// than spin.
			for _, j := range jobs {
				l.finish(jobs, j, fmt.Errorf("tftp loop: epoll_wait: %w", err))
			}
			n = 0
		}
		now := time.Now()
		for _, ev := range events[:max(n, 0)] {
			if ev.Fd == int32(l.evfd) {
				if l.admit(jobs, now, &next) {
					return
				}
				continue
			}
			if j := jobs[ev.Fd]; j != nil {
				l.readable(jobs, j, now)
			}
		}
		if len(jobs) > 0 && !now.Before(next) {
			next = now.Add(time.Hour)
			for _, j := range jobs {
				if j.d.closed.Load() {
					l.finish(jobs, j, net.ErrClosed)
					continue
				}
				if !now.Before(j.deadline) {
					l.resend(jobs, j, now)
				}
				if _, ok := jobs[j.d.fd32()]; ok && j.deadline.Before(next) {
					next = j.deadline
				}
			}
		}
	}
}

// admit takes the jobs handed over since the last wake-up and sends their
// first packets. It reports whether the loop should end.
func (l *loop) admit(jobs map[int32]*job, now time.Time, next *time.Time) bool {
	var buf [8]byte
	unix.Read(l.evfd, buf[:])
	l.mu.Lock()
	in := l.incoming
	l.incoming = nil
	stopped := l.stopped
	l.mu.Unlock()
	for _, j := range in {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: j.d.fd32()}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, j.d.fd, &ev); err != nil {
			j.done <- fmt.Errorf("hand transfer to the loop: %w", err)
			continue
		}
		jobs[j.d.fd32()] = j
		if j.d.closed.Load() {
			l.finish(jobs, j, net.ErrClosed)
			continue
		}
		l.resend(jobs, j, now)
		if _, ok := jobs[j.d.fd32()]; ok && (next.IsZero() || j.deadline.Before(*next)) {
			*next = j.deadline
		}
	}
	return stopped && len(jobs) == 0
}

func (l *loop) finish(jobs map[int32]*job, j *job, err error) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, j.d.fd, nil)
	delete(jobs, j.d.fd32())
	j.done <- err
}

// resend sends the job's window (or OACK) again, or ends the job when it
// has been sent Retries times without progress: the top of send's loop.
func (l *loop) resend(jobs map[int32]*job, j *job, now time.Time) {
	t := j.t
	if j.tries == t.retries {
		if j.oack != nil {
			l.finish(jobs, j, fmt.Errorf("send option acknowledgement: %w", errTimeout))
		} else {
			l.finish(jobs, j, fmt.Errorf("send block %d: %w", t.acked+1, errTimeout))
		}
		return
	}
	j.tries++
	if j.oack != nil {
		if err := t.conn.write(j.oack); err != nil {
			l.finish(jobs, j, fmt.Errorf("send option acknowledgement: %w", err))
			return
		}
	} else {
		j.last = min(t.acked+int64(t.window), t.blocks)
		for k := t.acked + 1; k <= j.last; k++ {
			if err := t.sendBlock(k); err != nil {
				l.finish(jobs, j, err)
				return
			}
		}
	}
	j.deadline = now.Add(t.timeout)
}

// readable reads one packet for j: an ACK that moves the window on sends
// the next one, an ERROR ends the job, anything else is ignored (level-
// triggered epoll reports the socket again if more is queued).
func (l *loop) readable(jobs map[int32]*job, j *job, now time.Time) {
	t := j.t
	if j.d.closed.Load() {
		l.finish(jobs, j, net.ErrClosed)
		return
	}
	n, err := unix.Read(j.d.fd, t.in)
	switch {
	case err == unix.EAGAIN, err == unix.EINTR, err == unix.ECONNREFUSED:
		// Nothing after all, or an ICMP error from an earlier packet: the
		// client is gone or not listening yet; the timeout decides.
		return
	case err != nil:
		l.finish(jobs, j, fmt.Errorf("read acknowledgement: %w", err))
		return
	case n >= 4 && binary.BigEndian.Uint16(t.in) == opERROR:
		pe, _ := parseError(t.in[:n])
		l.finish(jobs, j, pe)
		return
	case n < 4 || binary.BigEndian.Uint16(t.in) != opACK:
		return
	}
	blk := binary.BigEndian.Uint16(t.in[2:])
	if j.oack != nil {
		if blk != 0 {
			return
		}
		j.oack = nil
	} else {
		// Map the 16-bit block number into (acked, last], as send does.
		k := t.acked + int64(uint16(blk-uint16(t.acked)))
		if k <= t.acked || k > j.last {
			return // duplicate or stray ACK: wait on, send nothing
		}
		t.acked = k
		if t.acked == t.blocks {
			l.finish(jobs, j, nil)
			return
		}
	}
	j.tries = 0
	l.resend(jobs, j, now)
}

func (d *dgram) fd32() int32 { return int32(d.fd) }
