package dhcp

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Allocation errors, each with a plain-words meaning for the timeline.
var (
	ErrPoolFull  = errors.New("address pool is full: every address is leased or on offer; shorten the lease time or enlarge the pool")
	ErrAddrTaken = errors.New("the requested address belongs to another machine")
	ErrNotOurs   = errors.New("the requested address is not in Onramp's address pool")
)

// offerHold is how long an offered address stays reserved for the client it
// was offered to (RFC 2131 §4.3.1 leaves it to the server).
const (
	offerHold   = 30 * time.Second
	declineHold = 10 * time.Minute
)

type hold struct {
	mac   string
	until time.Time
}

// pool allocates addresses from [start, end] and records bindings in the
// lease store. All methods are safe for concurrent use.
type pool struct {
	mu       sync.Mutex
	start    uint32
	end      uint32
	exclude  uint32 // the server's own address
	store    *leaseStore
	pending  map[uint32]hold
	declined map[uint32]time.Time
	next     uint32 // where the scan for never-used addresses resumes
}

func newPool(start, end, server net.IP, store *leaseStore) *pool {
	return &pool{
		start: ip4u(start), end: ip4u(end), exclude: ip4u(server), store: store,
		pending: map[uint32]hold{}, declined: map[uint32]time.Time{}, next: ip4u(start),
	}
}

func (p *pool) inRange(u uint32) bool { return u >= p.start && u <= p.end && u != p.exclude }

// freeFor reports whether u may be given to mac now.
func (p *pool) freeFor(u uint32, mac string, now time.Time) bool {
	if !p.inRange(u) {
		return false
	}
	if b := p.store.byIP[u]; b != nil && b.mac != mac && b.expires.After(now) {
		return false
	}
	if h, ok := p.pending[u]; ok && h.mac != mac && h.until.After(now) {
		return false
	}
	if t, ok := p.declined[u]; ok && t.After(now) {
		return false
	}
	return true
}

// offer picks an address for mac and holds it for offerHold: the address
// mac had before, else the one it asks for, else a never-used one, else the
// longest-expired one.
func (p *pool) offer(mac string, requested net.IP, now time.Time) (net.IP, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pick := func(u uint32) net.IP {
		for ip, h := range p.pending {
			if h.mac == mac && ip != u {
				delete(p.pending, ip)
			}
		}
		p.pending[u] = hold{mac: mac, until: now.Add(offerHold)}
		return u2ip(u)
	}
	if b := p.store.byMAC[mac]; b != nil && p.freeFor(b.ip, mac, now) {
		return pick(b.ip), nil
	}
	for u, h := range p.pending {
		if h.mac == mac && p.freeFor(u, mac, now) {
			return pick(u), nil
		}
	}
	if requested != nil {
		if u := ip4u(requested); p.freeFor(u, mac, now) && p.store.byIP[u] == nil {
			return pick(u), nil
		}
	}
	size := p.end - p.start + 1
	for i := uint32(0); i < size; i++ {
		u := p.start + (p.next-p.start+i)%size
		if p.store.byIP[u] == nil && p.freeFor(u, mac, now) {
			p.next = u + 1
			if p.next > p.end {
				p.next = p.start
			}
			return pick(u), nil
		}
	}
	var oldest *binding
	for _, b := range p.store.byIP {
		if p.freeFor(b.ip, mac, now) && (oldest == nil || b.expires.Before(oldest.expires)) {
			oldest = b
		}
	}
	if oldest != nil {
		return pick(oldest.ip), nil
	}
	return nil, ErrPoolFull
}

// commit binds ip to mac until now+lease, durably, before the caller ACKs.
// The binding takes effect in memory at once (so no one else is offered the
// address); the fsync runs outside the pool's lock and is shared with
// concurrent commits.
func (p *pool) commit(mac string, ip net.IP, lease time.Duration, now time.Time) error {
	p.mu.Lock()
	u := ip4u(ip)
	if !p.inRange(u) {
		p.mu.Unlock()
		return ErrNotOurs
	}
	if !p.freeFor(u, mac, now) {
		p.mu.Unlock()
		return ErrAddrTaken
	}
	seq := p.store.enqueue(leaseRecord{Op: "bind", MAC: mac, IP: u2ip(u).String(), Expires: now.Add(lease).Unix()})
	delete(p.pending, u)
	var err error
	if p.store.needsCompaction() {
		err = p.store.compact()
	}
	p.mu.Unlock()
	if err == nil {
		err = p.store.wait(seq)
	}
	if err != nil {
		return fmt.Errorf("record lease: %w", err)
	}
	return nil
}

// cancel drops mac's held offer (it chose another server).
func (p *pool) cancel(mac string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for u, h := range p.pending {
		if h.mac == mac {
			delete(p.pending, u)
		}
	}
}

// release ends mac's lease (DHCPRELEASE).
func (p *pool) release(mac string) error {
	p.mu.Lock()
	if p.store.byMAC[mac] == nil {
		p.mu.Unlock()
		return nil
	}
	seq := p.store.enqueue(leaseRecord{Op: "free", MAC: mac})
	p.mu.Unlock()
	return p.store.wait(seq)
}

// decline marks ip unusable for a while (DHCPDECLINE: someone else answers ARP for it).
func (p *pool) decline(mac string, ip net.IP, now time.Time) error {
	p.mu.Lock()
	p.declined[ip4u(ip)] = now.Add(declineHold)
	if b := p.store.byMAC[mac]; b == nil || b.ip != ip4u(ip) {
		p.mu.Unlock()
		return nil
	}
	seq := p.store.enqueue(leaseRecord{Op: "free", MAC: mac})
	p.mu.Unlock()
	return p.store.wait(seq)
}

// expirePending forgets held offers whose time is up (bounds memory under a
// flood of DISCOVERs from random MACs).
func (p *pool) expirePending(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for u, h := range p.pending {
		if !h.until.After(now) {
			delete(p.pending, u)
		}
	}
	for u, t := range p.declined {
		if !t.After(now) {
			delete(p.declined, u)
		}
	}
}

// lookup returns mac's bound address, for tests and the UI.
func (p *pool) lookup(mac string) (net.IP, time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.store.byMAC[mac]
	if b == nil {
		return nil, time.Time{}, false
	}
	return u2ip(b.ip), b.expires, true
}
