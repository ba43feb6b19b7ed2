package httpboot

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// limiters holds one token bucket per client IP, shared by all of that
// client's connections, and forgets a client when its last download ends.
type limiters struct {
	rate int64
	mu   sync.Mutex
	m    map[string]*bucket
}

func newLimiters(rate int64) *limiters {
	return &limiters{rate: rate, m: map[string]*bucket{}}
}

func (l *limiters) acquire(ip string) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[ip]
	if b == nil {
		b = &bucket{rate: float64(l.rate), burst: float64(min(l.rate, 256<<10)), last: time.Now()}
		b.tokens = b.burst
		l.m[ip] = b
	}
	b.refs++
	return b
}

func (l *limiters) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.m[ip]; b != nil {
		b.refs--
		if b.refs <= 0 {
			delete(l.m, ip)
		}
	}
}

func (l *limiters) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// bucket is a token bucket: rate bytes/s, at most burst bytes at once.
type bucket struct {
	rate, burst float64
	refs        int // guarded by limiters.mu

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take removes n tokens and returns how long the caller must wait before
// sending them (the debt at the current rate).
func (b *bucket) take(n int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// rateWriter paces body writes through a bucket. It deliberately has no
// ReadFrom: pacing needs the bytes to pass through Write.
type rateWriter struct {
	http.ResponseWriter
	b   *bucket
	ctx context.Context
}

// chunk is the largest write paced at once, so a client's rate is smooth
// at the scale of a few TCP windows.
const chunk = 16 << 10

func (w *rateWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), chunk)
		if d := w.b.take(n); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-w.ctx.Done():
				t.Stop()
				return written, w.ctx.Err()
			}
		}
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Unwrap lets http.ResponseController reach the connection.
func (w *rateWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
