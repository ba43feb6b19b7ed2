package kit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Two preparers on one cache: the second waits for the first.
func TestLockDirSerializes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unlock, err := lockDir(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		u2, err := lockDir(t.Context(), dir)
		if err != nil {
			t.Error(err)
			return
		}
		got.Store(true)
		u2()
	}()
	time.Sleep(500 * time.Millisecond)
	if got.Load() {
		t.Fatal("second locker got the lock while the first held it")
	}
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("second locker never got the lock")
	}
	// A cancelled wait gives up with the context's error.
	unlock, _ = lockDir(t.Context(), dir)
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockDir(ctx, dir); err == nil {
		t.Fatal("lock acquired while held")
	}
}
