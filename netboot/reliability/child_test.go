package reliability

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"onramp/netboot"
	"onramp/netboot/server"
)

// The helpers below run as child processes (`ip netns exec NS <this test
// binary> -test.run=^TestChild...$`) so that every socket they open, also
// from goroutines, lives in the namespace. Their configuration arrives as
// JSON in childEnv; without it they skip.
const childEnv = "ONRAMP_RELIABILITY_CHILD"

func childConfig(t *testing.T, v any) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("helper process for the reliability tests")
	}
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		t.Fatal(err)
	}
}

// serverConfig configures TestChildServer.
type serverConfig struct {
	Iface, Data, Assets string
	// Allow, when set, is the allowlist: other MACs get netboot.ErrNotApproved.
	Allow []string
	// ProbeTimeout of the start-up probe for foreign DHCP servers.
	ProbeTimeout time.Duration
}

// TestChildServer runs Onramp's boot services (package server, isolated
// mode) until SIGTERM, printing {"goroutines":N} every 200 ms on stdout.
func TestChildServer(t *testing.T) {
	var cfg serverConfig
	childConfig(t, &cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	allow := map[string]bool{}
	for _, m := range cfg.Allow {
		allow[m] = true
	}
	booter := netboot.BooterFunc(func(_ context.Context, m netboot.Machine) (netboot.Decision, error) {
		if len(allow) > 0 && !allow[m.MAC.String()] {
			return netboot.Decision{}, netboot.ErrNotApproved
		}
		return netboot.Decision{Kind: netboot.BootKernel, Kernel: "lab/vmlinuz", Initrd: "lab/initrd.img", Cmdline: []string{"talos.platform=metal"}}, nil
	})
	srv, err := server.New(server.Config{Iface: cfg.Iface, Mode: server.Isolated, DataDir: cfg.Data, AssetsDir: cfg.Assets,
		Booter: booter, ProbeTimeout: cfg.ProbeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fmt.Printf("{\"goroutines\":%d}\n", runtime.NumGoroutine())
			}
		}
	}()
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child server:", err)
		os.Exit(1)
	}
}

// genConfig configures TestChildGen, a DHCP/TFTP load generator acting as
// a relay agent (giaddr = Local, replies come to Local:67).
type genConfig struct {
	Mode  string // "dora", "flood", "storm"
	Local string // this namespace's address
	Count int
	// MACBase is the second byte of the generated MACs (02:BB:i...): runs
	// with the same base and count use the same MACs.
	MACBase byte
	Seed    uint64
	Workers int
	Rate    int // storm: packets per second (0 = as fast as the socket takes them)
	// Hold is how long slow clients keep their connections.
	Hold time.Duration
	// Deadline bounds the whole run.
	Deadline time.Duration
}

// genResult is printed as the last JSON line of TestChildGen.
type genResult struct {
	Sent, Offers, Acks, Naks, Failed int
	Leases                           map[string]string // dora: MAC → acknowledged address
	MaxS                             float64           // dora: slowest DORA
}

func TestChildGen(t *testing.T) {
	var cfg genConfig
	childConfig(t, &cfg)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Deadline)
	defer cancel()
	sig, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	var res genResult
	var err error
	switch cfg.Mode {
	case "dora":
		res, err = genDORA(sig, cfg)
	case "flood":
		res, err = genFlood(sig, cfg)
	case "storm":
		res, err = genStorm(sig, cfg)
	case "slow":
		res, err = genSlow(sig, cfg)
	case "ranges":
		res, err = genRanges(sig, cfg)
	default:
		err = fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

func genMAC(base byte, i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, base, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// relay is a socket on Local:67 that sends relayed requests to the server
// and hands replies to whoever waits for their xid.
type relay struct {
	c       *net.UDPConn
	giaddr  net.IP
	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	offers  atomic.Int64
	acks    atomic.Int64
	naks    atomic.Int64
}

func newRelay(local string) (*relay, error) {
	ip := net.ParseIP(local).To4()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: dhcpv4.ServerPort})
	if err != nil {
		return nil, fmt.Errorf("listen as relay: %w", err)
	}
	r := &relay{c: c, giaddr: ip, waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			switch p.MessageType() {
			case dhcpv4.MessageTypeOffer:
				r.offers.Add(1)
			case dhcpv4.MessageTypeAck:
				r.acks.Add(1)
			case dhcpv4.MessageTypeNak:
				r.naks.Add(1)
			}
			r.mu.Lock()
			ch := r.waiting[p.TransactionID]
			r.mu.Unlock()
			if ch != nil {
				select {
				case ch <- p:
				default:
				}
			}
		}
	}()
	return r, nil
}

var serverAddr = &net.UDPAddr{IP: net.ParseIP(serverIP), Port: dhcpv4.ServerPort}

func pxeOptions(mac net.HardwareAddr, t dhcpv4.MessageType) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(t),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}
}

// exchange sends p (relayed) up to 3 times, 1 s apart, until a reply of
// one of the wanted types arrives.
func (r *relay) exchange(ctx context.Context, p *dhcpv4.DHCPv4, want ...dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	p.GatewayIPAddr = r.giaddr
	p.HopCount = 1
	ch := make(chan *dhcpv4.DHCPv4, 4)
	r.mu.Lock()
	r.waiting[p.TransactionID] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, p.TransactionID)
		r.mu.Unlock()
	}()
	for range 3 {
		if _, err := r.c.WriteToUDP(p.ToBytes(), serverAddr); err != nil {
			return nil, err
		}
		timer := time.NewTimer(time.Second)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
				break wait
			case reply := <-ch:
				if slices.Contains(want, reply.MessageType()) {
					timer.Stop()
					return reply, nil
				}
			}
		}
	}
	return nil, errors.New("no answer")
}

func (r *relay) dora(ctx context.Context, mac net.HardwareAddr) (net.IP, error) {
	d, _ := dhcpv4.New(pxeOptions(mac, dhcpv4.MessageTypeDiscover)...)
	offer, err := r.exchange(ctx, d, dhcpv4.MessageTypeOffer)
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	req, _ := dhcpv4.New(append(pxeOptions(mac, dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))...)
	ack, err := r.exchange(ctx, req, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		return nil, fmt.Errorf("NAK for %s: %s", offer.YourIPAddr, ack.Message())
	}
	return ack.YourIPAddr, nil
}

// genDORA does a full relayed DORA for Count MACs with Workers at once and
// prints every acknowledged lease as soon as it is acknowledged (so a
// parent that kills the server mid-run knows what was promised).
func genDORA(ctx context.Context, cfg genConfig) (genResult, error) {
	r, err := newRelay(cfg.Local)
	if err != nil {
		return genResult{}, err
	}
	defer r.c.Close()
	res := genResult{Leases: map[string]string{}}
	var mu sync.Mutex
	next := atomic.Int64{}
	var wg sync.WaitGroup
	enc := json.NewEncoder(os.Stdout)
	for range max(cfg.Workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= cfg.Count {
					return
				}
				mac := genMAC(cfg.MACBase, i)
				start := time.Now()
				ip, err := r.dora(ctx, mac)
				mu.Lock()
				res.Sent++
				if err != nil {
					res.Failed++
				} else {
					res.Leases[mac.String()] = ip.String()
					res.MaxS = max(res.MaxS, time.Since(start).Seconds())
					enc.Encode(map[string]string{"ack": mac.String(), "ip": ip.String(), "at": time.Now().Format(time.RFC3339Nano)})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Offers, res.Acks, res.Naks = int(r.offers.Load()), int(r.acks.Load()), int(r.naks.Load())
	return res, nil
}

// genFlood sends a DISCOVER and a REQUEST from each of Count random MACs as
// fast as the socket takes them, then listens 1 s more, counting answers.
func genFlood(ctx context.Context, cfg genConfig) (genResult, error) {
	r, err := newRelay(cfg.Local)
	if err != nil {
		return genResult{}, err
	}
	defer r.c.Close()
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	var res genResult
	for i := 0; i < cfg.Count && ctx.Err() == nil; i++ {
		mac := net.HardwareAddr{0x02, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		d, _ := dhcpv4.New(pxeOptions(mac, dhcpv4.MessageTypeDiscover)...)
		want := net.IPv4(10, 77, 0, byte(100+rng.IntN(150)))
		q, _ := dhcpv4.New(append(pxeOptions(mac, dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(serverIP))))...)
		for _, p := range []*dhcpv4.DHCPv4{d, q} {
			p.GatewayIPAddr, p.HopCount = r.giaddr, 1
			if _, err := r.c.WriteToUDP(p.ToBytes(), serverAddr); err == nil {
				res.Sent++
			}
		}
		if i%256 == 255 {
			time.Sleep(time.Millisecond) // let the receive side keep up
		}
	}
	time.Sleep(time.Second)
	res.Offers, res.Acks, res.Naks = int(r.offers.Load()), int(r.acks.Load()), int(r.naks.Load())
	return res, nil
}

// seeds are valid packets the storm mutates.
func stormSeeds() [][]byte {
	mac := net.HardwareAddr{0x02, 0xee, 0, 0, 0, 1}
	var seeds [][]byte
	for _, t := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform, dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline} {
		p, _ := dhcpv4.New(append(pxeOptions(mac, t),
			dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 77, 0, 120))),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...))))...)
		seeds = append(seeds, p.ToBytes())
	}
	tftp := func(op uint16, rest ...string) []byte {
		b := binary.BigEndian.AppendUint16(nil, op)
		for _, s := range rest {
			b = append(append(b, s...), 0)
		}
		return b
	}
	seeds = append(seeds,
		tftp(1, "ipxe.efi", "octet", "blksize", "1468", "tsize", "0"),
		tftp(1, "undionly.kpxe", "netascii"),
		tftp(2, "x", "octet"),
		append(binary.BigEndian.AppendUint16(nil, 4), 0, 1),
		append(binary.BigEndian.AppendUint16(nil, 5), append([]byte{0, 1}, "boom\x00"...)...),
		append(binary.BigEndian.AppendUint16(nil, 3), 0, 1, 'd'),
	)
	return seeds
}

func mutate(rng *rand.Rand, seed []byte) []byte {
	b := slices.Clone(seed)
	switch rng.IntN(6) {
	case 0: // flip bytes
		for range 1 + rng.IntN(8) {
			if len(b) > 0 {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
		}
	case 1: // truncate
		b = b[:rng.IntN(len(b)+1)]
	case 2: // append garbage
		for range rng.IntN(600) {
			b = append(b, byte(rng.Uint32()))
		}
	case 3: // an option (or TFTP field) whose length lies
		if len(b) > 241 {
			i := 240 + rng.IntN(len(b)-240)
			b = append(b[:i], append([]byte{byte(rng.Uint32()), byte(rng.Uint32())}, b[i:]...)...)
		} else {
			b = append(b, 0xff, 0xff, 0xff)
		}
	case 4: // pure noise
		b = make([]byte, rng.IntN(1400))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	default: // valid seed, mutated one field
		if len(b) > 8 {
			binary.BigEndian.PutUint32(b[4:], rng.Uint32())
		}
	}
	return b
}

// genStorm sends Count mutated DHCP and TFTP packets to the server's ports
// (unicast and broadcast).
func genStorm(ctx context.Context, cfg genConfig) (genResult, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(cfg.Local)})
	if err != nil {
		return genResult{}, fmt.Errorf("listen: %w", err)
	}
	defer c.Close()
	rc, _ := c.SyscallConn()
	rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
	go func() { // drain replies (TFTP transfers the storm starts by accident)
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				return
			}
		}
	}()
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	seeds := stormSeeds()
	dhcpSeeds := 5
	var res genResult
	start := time.Now()
	for i := 0; i < cfg.Count && ctx.Err() == nil; i++ {
		si := rng.IntN(len(seeds))
		pkt := mutate(rng, seeds[si])
		to := &net.UDPAddr{IP: net.ParseIP(serverIP), Port: 69}
		if si < dhcpSeeds {
			to.Port = 67
			if rng.IntN(2) == 0 {
				to.IP = net.IPv4bcast
			}
		}
		if _, err := c.WriteToUDP(pkt, to); err == nil {
			res.Sent++
		}
		if i%100 == 99 {
			if cfg.Rate > 0 {
				if ahead := time.Duration(i+1)*time.Second/time.Duration(cfg.Rate) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			} else {
				time.Sleep(time.Millisecond)
			}
		}
	}
	return res, nil
}

// genSlow opens Count connections to the HTTP server: half send their
// request headers one line per second and never finish (slowloris), half
// ask for a file and read one byte per second. All are held for Hold.
// Sent counts connections opened, Failed those refused.
func genSlow(ctx context.Context, cfg genConfig) (genResult, error) {
	var res genResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(ctx, cfg.Hold)
	defer cancel()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(cfg.Local)}}
	for i := range cfg.Count {
		wg.Go(func() {
			c, err := d.DialContext(ctx, "tcp", serverIP+":8080")
			mu.Lock()
			res.Sent++
			if err != nil {
				res.Failed++
			}
			mu.Unlock()
			if err != nil {
				return
			}
			defer c.Close()
			go func() { <-ctx.Done(); c.Close() }()
			if i%2 == 0 {
				fmt.Fprintf(c, "GET /assets/lab/vmlinuz HTTP/1.1\r\nHost: %s\r\n", serverIP)
				for n := 0; ctx.Err() == nil; n++ {
					if _, err := fmt.Fprintf(c, "X-Slow-%d: %d\r\n", n, n); err != nil {
						return
					}
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
				return
			}
			fmt.Fprintf(c, "GET /assets/lab/vmlinuz HTTP/1.1\r\nHost: %s\r\n\r\n", serverIP)
			b := make([]byte, 1)
			for ctx.Err() == nil {
				if _, err := c.Read(b); err != nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		})
	}
	wg.Wait()
	return res, nil
}

// genRanges sends Count requests for the kernel, Workers at once, each
// with a Range header of 200 one-byte ranges (a multipart answer) or one
// random range. Acks counts 206 answers, Failed errors.
func genRanges(ctx context.Context, cfg genConfig) (genResult, error) {
	var res genResult
	var mu sync.Mutex
	next := atomic.Int64{}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(cfg.Local)}}).DialContext, MaxIdleConnsPerHost: cfg.Workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var many strings.Builder
	many.WriteString("bytes=")
	for i := range 200 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, "%d-%d", i*1000, i*1000)
	}
	var wg sync.WaitGroup
	for w := range max(cfg.Workers, 1) {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			for ctx.Err() == nil && int(next.Add(1)) <= cfg.Count {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+serverIP+":8080/assets/lab/vmlinuz", nil)
				if rng.IntN(2) == 0 {
					req.Header.Set("Range", many.String())
				} else {
					a := rng.IntN(2 << 20)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", a, a+rng.IntN(65536)))
				}
				resp, err := client.Do(req)
				ok := err == nil && resp.StatusCode == http.StatusPartialContent
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				res.Sent++
				if ok {
					res.Acks++
				} else {
					res.Failed++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res, nil
}
