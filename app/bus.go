package app

import (
	"sync"
)

// Bus fans out named events ("netboot:event", "system:info", ...) to every
// subscriber: each web client's event stream, and in the desktop app the
// Wails runtime. A slow subscriber loses events rather than blocking the
// publisher (the protocol servers publish on their packet paths); it is then
// sent EventResync as soon as its buffer has room again, so the UI re-reads
// what it shows instead of staying on a stale picture.
type Bus struct {
	mu   sync.Mutex
	subs map[int]*subscriber
	next int
}

type subscriber struct {
	ch   chan Message
	lost bool // an event was dropped; EventResync is owed
}

// Message is one named event with a JSON-encodable payload.
type Message struct {
	Name string `json:"name"`
	Data any    `json:"data"`
}

// EventResync tells a subscriber that it missed events: re-read the state.
const EventResync = "bus:resync"

// subscriberBuffer bounds what a slow subscriber may lag behind.
const subscriberBuffer = 256

// NewBus returns an empty bus.
func NewBus() *Bus {
	return &Bus{subs: make(map[int]*subscriber)}
}

// Publish sends an event to every subscriber without blocking.
func (b *Bus) Publish(name string, data any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		if s.lost {
			select {
			case s.ch <- Message{Name: EventResync, Data: map[string]any{"reason": "events were dropped for a slow client"}}:
				s.lost = false
			default:
				continue // still full: this event is lost too, the resync stays owed
			}
		}
		select {
		case s.ch <- Message{Name: name, Data: data}:
		default: // subscriber is behind: drop rather than stall the publisher
			s.lost = true
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
	s := &subscriber{ch: make(chan Message, subscriberBuffer)}
	b.subs[id] = s
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			delete(b.subs, id)
			close(s.ch)
		})
	}
}
