package dhcp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openPool(t *testing.T, path string) *pool {
	t.Helper()
	st, err := openLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newPool(net.IP{10, 77, 0, 100}, net.IP{10, 77, 0, 109}, net.IP{10, 77, 0, 1}, st)
}

func macN(i int) string { return fmt.Sprintf("02:00:00:00:10:%02x", i) }

// TestLeasesSurviveCrash: leases committed (and so ACKed) are on disk even
// if the process dies without closing anything; no address goes to two MACs
// afterwards.
func TestLeasesSurviveCrash(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leases")
	now := time.Unix(1_800_000_000, 0)
	p := openPool(t, path)
	bound := map[string]string{}
	for i := range 6 {
		ip, err := p.offer(macN(i), nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.commit(macN(i), ip, time.Hour, now); err != nil {
			t.Fatal(err)
		}
		bound[macN(i)] = ip.String()
	}
	// "kill -9": the first store is never closed, only its lock goes away
	// as the kernel would drop it; a new process opens the file.
	if _, err := openLeaseStore(path); err == nil {
		t.Fatal("a second store opened a locked lease file")
	}
	p.store.lock.Close()
	p2 := openPool(t, path)
	seen := map[string]bool{}
	for mac, ip := range bound {
		got, _, ok := p2.lookup(mac)
		if !ok || got.String() != ip {
			t.Errorf("after crash %s has %v, want %s", mac, got, ip)
		}
		seen[ip] = true
	}
	// New machines fill the rest of the pool, never a leased address.
	for i := 6; i < 10; i++ {
		ip, err := p2.offer(macN(i), net.ParseIP(bound[macN(0)]), now) // asks for a taken one
		if err != nil {
			t.Fatal(err)
		}
		if seen[ip.String()] {
			t.Fatalf("%s offered %s, already leased", macN(i), ip)
		}
		seen[ip.String()] = true
		if err := p2.commit(macN(i), ip, time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p2.offer(macN(20), nil, now); !errors.Is(err, ErrPoolFull) {
		t.Errorf("full pool: err = %v, want ErrPoolFull", err)
	}
	if err := p2.commit(macN(20), net.ParseIP(bound[macN(1)]), time.Hour, now); !errors.Is(err, ErrAddrTaken) {
		t.Errorf("commit of a leased address: err = %v, want ErrAddrTaken", err)
	}
	// After expiry the oldest lease is reused.
	if ip, err := p2.offer(macN(20), nil, now.Add(2*time.Hour)); err != nil || !seen[ip.String()] {
		t.Errorf("after expiry: %v %v", ip, err)
	}
}

func TestLeaseFileDamage(t *testing.T) {
	t.Parallel()
	write := func(t *testing.T) (string, []string) {
		path := filepath.Join(t.TempDir(), "leases")
		st, err := openLeaseStore(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := st.bind(macN(i), net.IP{10, 77, 0, byte(100 + i)}, time.Unix(1_900_000_000, 0)); err != nil {
				t.Fatal(err)
			}
		}
		st.Close()
		b, _ := os.ReadFile(path)
		return path, strings.SplitAfter(string(b), "\n")
	}
	t.Run("torn last record", func(t *testing.T) {
		t.Parallel()
		path, _ := write(t)
		torn := string(encodeRecord(leaseRecord{Op: "bind", MAC: macN(9), IP: "10.77.0.109", Expires: 1}))
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(torn[:len(torn)/2])
		f.Close()
		st, err := openLeaseStore(path)
		if err != nil {
			t.Fatalf("torn tail must recover: %v", err)
		}
		defer st.Close()
		if st.Recovered != 1 || len(st.byMAC) != 3 {
			t.Errorf("recovered %d, leases %d; want 1 and 3", st.Recovered, len(st.byMAC))
		}
		// The file was cut back to its valid prefix and appends continue.
		if err := st.bind(macN(5), net.IP{10, 77, 0, 105}, time.Unix(1_900_000_000, 0)); err != nil {
			t.Fatal(err)
		}
		st.Close()
		st2, err := openLeaseStore(path)
		if err != nil || len(st2.byMAC) != 4 || st2.Recovered != 0 {
			t.Fatalf("reopen after recovery: %v, %d leases", err, len(st2.byMAC))
		}
		st2.Close()
	})
	t.Run("corrupt middle record", func(t *testing.T) {
		t.Parallel()
		path, lines := write(t)
		lines[1] = strings.Replace(lines[1], "10.77.0.101", "10.77.0.111", 1)
		os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600)
		_, err := openLeaseStore(path)
		if !errors.Is(err, ErrCorruptLeases) || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("err = %v, want ErrCorruptLeases at line 2", err)
		}
	})
	t.Run("garbage file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "leases")
		os.WriteFile(path, []byte("hello\nworld\n"), 0o600)
		if _, err := openLeaseStore(path); !errors.Is(err, ErrCorruptLeases) {
			t.Fatalf("err = %v, want ErrCorruptLeases", err)
		}
	})
}

func TestLeaseCompaction(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leases")
	st, err := openLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(1_900_000_000, 0)
	for i := range 500 {
		if err := st.bind(macN(i%4), net.IP{10, 77, 0, byte(100 + i%4)}, exp.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n > 4*4+64+1 {
		t.Errorf("journal has %d lines after compaction, want few", n)
	}
	st2, err := openLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if b := st2.byMAC[macN(3)]; b == nil || !b.expires.Equal(exp.Add(499*time.Second)) {
		t.Errorf("latest lease of %s lost in compaction: %+v", macN(3), b)
	}
}

// TestConcurrentCommits: commits racing on one pool share fsyncs, each
// returns only once durable, and every one is in the file afterwards.
func TestConcurrentCommits(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leases")
	st, err := openLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(net.IP{10, 77, 0, 0}, net.IP{10, 77, 3, 255}, net.IP{10, 77, 0, 1}, st)
	now := time.Unix(1_800_000_000, 0)
	const n = 400
	errs := make(chan error, n)
	for i := range n {
		go func() {
			mac := fmt.Sprintf("02:00:00:%02x:%02x:01", i>>8, i&0xff)
			ip, err := p.offer(mac, nil, now)
			if err == nil {
				err = p.commit(mac, ip, time.Hour, now)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// No Close: reopen as after a crash (the kernel drops the lock).
	st.lock.Close()
	st2, err := openLeaseStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	defer st.Close()
	if len(st2.byMAC) != n || len(st2.byIP) != n {
		t.Errorf("after reopen %d MACs / %d addresses, want %d each", len(st2.byMAC), len(st2.byIP), n)
	}
}
