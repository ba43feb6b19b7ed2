package benchmark

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// RackRun is N simulated machines booting at once: DHCP as UEFI PXE →
// TFTP ipxe.efi → DHCP as iPXE → HTTP script → HTTP kernel + initrd, each
// machine in its own namespace with real clients (busybox udhcpc, curl).
type RackRun struct {
	Machines  int     `json:"machines"`
	Done      int     `json:"done"`
	AllDoneS  float64 `json:"all_done_s"` // start to the last machine's finish
	FirstS    float64 `json:"first_s"`    // start to the first machine's finish
	MedianS   float64 `json:"median_s"`   // median machine's boot time
	SpreadS   float64 `json:"spread_s"`   // last finish − first finish
	DHCPp50S  float64 `json:"dhcp_p50_s"` // first lease, median
	DHCPMaxS  float64 `json:"dhcp_max_s"` // first lease, slowest
	FirstFail string  `json:"first_fail,omitempty"`
	// Onramp under this load (sampled every 200 ms).
	PeakRSSKiB  int64 `json:"peak_rss_kib"`
	PeakThreads int   `json:"peak_threads"`
	PeakFDs     int   `json:"peak_fds"`
	// Commands is what each machine ran, in its own namespace.
	Commands []string `json:"commands"`
}

// rackCommands documents bootMachine.
var rackCommands = []string{
	"udhcpc -i m0 -n -q -f -t 8 -T 2 -V PXEClient:Arch:00007:UNDI:003016 -x 0x5d:0007",
	"ip addr add $ip/16 dev m0",
	"curl -fsS tftp://$siaddr/$boot_file",
	"udhcpc ... -x 0x4d:69505845 (user class iPXE) → boot_file = script URL",
	"curl -fsS $script_url",
	"curl -fsS -o /dev/null $kernel_url -o /dev/null $initrd_url",
}

type machineTimes struct {
	dhcp, total float64
	err         error
}

// udhcpcScript writes the variables of a bound lease to $OBB_OUT.
const udhcpcScript = "#!/bin/sh\n[ \"$1\" = bound ] && env > \"$OBB_OUT\"\nexit 0\n"

func (o *Options) rackScript() string { return filepath.Join(o.work, "udhcpc.sh") }

// lease runs udhcpc once in ns and returns the lease's variables.
func lease(ctx context.Context, o *Options, ns string, opts ...string) (map[string]string, error) {
	out := filepath.Join(o.work, ns+".lease")
	os.Remove(out)
	args := append([]string{"env", "OBB_OUT=" + out, "udhcpc", "-i", "m0", "-n", "-q", "-f", "-t", "8", "-T", "2", "-s", o.rackScript()}, opts...)
	if _, err := nsRun(ctx, ns, args...); err != nil {
		return nil, fmt.Errorf("udhcpc: %w", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("udhcpc: no lease")
	}
	vars := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// bootMachine walks one machine through the boot; it returns when the
// kernel and initrd have arrived.
func bootMachine(ctx context.Context, o *Options, ns string, start time.Time) machineTimes {
	var mt machineTimes
	fail := func(step string, err error) machineTimes {
		mt.err = fmt.Errorf("%s %s: %w", ns, step, err)
		return mt
	}
	nsRun(ctx, ns, "ip", "addr", "flush", "dev", "m0")
	v, err := lease(ctx, o, ns, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007")
	if err != nil {
		return fail("PXE DHCP", err)
	}
	mt.dhcp = time.Since(start).Seconds()
	if v["ip"] == "" || v["boot_file"] == "" {
		return fail("PXE DHCP", fmt.Errorf("lease without ip or boot file: ip=%q file=%q", v["ip"], v["boot_file"]))
	}
	if _, err := nsRun(ctx, ns, "ip", "addr", "add", v["ip"]+"/16", "dev", "m0"); err != nil {
		return fail("address", err)
	}
	if _, err := nsRun(ctx, ns, "curl", "-fsS", "--max-time", "120", "-o", "/dev/null", "tftp://"+v["siaddr"]+"/"+v["boot_file"]); err != nil {
		return fail("TFTP", err)
	}
	v2, err := lease(ctx, o, ns, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007", "-x", "0x4d:69505845")
	if err != nil {
		return fail("iPXE DHCP", err)
	}
	script, err := nsRun(ctx, ns, "curl", "-fsS", "--max-time", "60", v2["boot_file"])
	if err != nil {
		return fail("iPXE script", err)
	}
	var urls []string
	for _, f := range strings.Fields(script) {
		if strings.HasPrefix(f, "http://") {
			urls = append(urls, f)
		}
	}
	if len(urls) < 2 {
		return fail("iPXE script", fmt.Errorf("no kernel and initrd URLs in %q", script))
	}
	args := []string{"curl", "-fsS", "--max-time", "300"}
	for _, u := range urls {
		args = append(args, "-o", "/dev/null", u)
	}
	if _, err := nsRun(ctx, ns, args...); err != nil {
		return fail("HTTP kernel+initrd", err)
	}
	mt.total = time.Since(start).Seconds()
	return mt
}

// benchRack boots every machine in machines at once, sampling Onramp.
func benchRack(ctx context.Context, o *Options, machines []string, onramp *Proc) RackRun {
	r := RackRun{Machines: len(machines), Commands: rackCommands}
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if s, err := ReadProcStats(onramp.Pid()); err == nil {
				r.PeakRSSKiB = max(r.PeakRSSKiB, s.RSSKiB)
				r.PeakThreads = max(r.PeakThreads, s.Threads)
				r.PeakFDs = max(r.PeakFDs, s.FDs)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	res := make([]machineTimes, len(machines))
	var wg sync.WaitGroup
	for i, ns := range machines {
		wg.Go(func() { res[i] = bootMachine(ctx, o, ns, start) })
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	var totals, dhcps []float64
	for _, m := range res {
		if m.err != nil {
			if r.FirstFail == "" {
				r.FirstFail = m.err.Error()
			}
			continue
		}
		r.Done++
		totals = append(totals, m.total)
		dhcps = append(dhcps, m.dhcp)
	}
	if len(totals) > 0 {
		r.AllDoneS = percentile(totals, 100)
		r.FirstS = percentile(totals, 0)
		r.MedianS = percentile(totals, 50)
		r.SpreadS = r.AllDoneS - r.FirstS
		r.DHCPp50S = percentile(dhcps, 50)
		r.DHCPMaxS = percentile(dhcps, 100)
	}
	o.logf("rack %3d machines: %d booted, all done %.1f s, median %.1f s, spread %.1f s, peak RSS %d MiB", r.Machines, r.Done, r.AllDoneS, r.MedianS, r.SpreadS, r.PeakRSSKiB>>10)
	return r
}
