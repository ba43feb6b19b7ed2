package app

import (
	"sync"
)

// Bus fans out named events ("netboot:event", "system:info", ...) to every
// subscriber: each web client's event stream, and in the desktop app the
// Wails runtime. A slow subscriber loses events rather than blocking the
// publisher: the protocol servers publish on their packet paths.
type Bus struct {
	mu   sync.Mutex
	subs map[int]chan Message
	next int
}

// Message is one named event with a JSON-encodable payload.
type Message struct {
	Name string `json:"name"`
	Data any    `json:"data"`
}

// subscriberBuffer bounds what a slow subscriber may lag behind.
const subscriberBuffer = 256

// NewBus returns an empty bus.
func NewBus() *Bus {
	return &Bus{subs: make(map[int]chan Message)}
}

// Publish sends an event to every subscriber without blocking.
func (b *Bus) Publish(name string, data any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.subs {
		select {
		case ch <- Message{Name: name, Data: data}:
		default: // subscriber is behind: drop rather than stall the publisher
		}
	}
}

// Subscribe returns a channel of events and a function that ends the
// subscription and closes the channel.
func (b *Bus) Subscribe() (<-chan Message, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.next
	b.next++
	ch := make(chan Message, subscriberBuffer)
	b.subs[id] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			delete(b.subs, id)
			close(ch)
		})
	}
}
