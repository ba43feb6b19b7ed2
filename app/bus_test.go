package app

import "testing"

// A subscriber that fell behind loses events but is told to resync as soon
// as it has room again, before the next event.
func TestBusResyncAfterDrops(t *testing.T) {
	t.Parallel()
	b := NewBus()
	ch, cancel := b.Subscribe()
	defer cancel()
	for i := range subscriberBuffer + 10 {
		b.Publish("x", i)
	}
	if len(ch) != subscriberBuffer {
		t.Fatalf("buffered %d, want %d", len(ch), subscriberBuffer)
	}
	for range subscriberBuffer {
		if m := <-ch; m.Name != "x" {
			t.Fatalf("got %s before the backlog was read", m.Name)
		}
	}
	b.Publish("y", 1)
	if m := <-ch; m.Name != EventResync {
		t.Fatalf("first event after drops = %s, want %s", m.Name, EventResync)
	}
	if m := <-ch; m.Name != "y" {
		t.Fatalf("then %s, want y", m.Name)
	}
	b.Publish("z", 2)
	if m := <-ch; m.Name != "z" {
		t.Fatalf("resync sent twice: got %s", m.Name)
	}
}
