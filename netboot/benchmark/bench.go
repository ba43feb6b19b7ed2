// Package benchmark measures Onramp's boot services side by side with
// well-known peers doing the same work in the same run, on the same
// network: DHCP (RFC 2131, driven by Kea's perfdhcp acting as a relay
// agent, so replies go to giaddr on port 67) against kea-dhcp4 with a
// memfile lease database; TFTP (RFC 1350 with blksize, RFC 2348, and
// tsize, RFC 2349) against tftpd-hpa, curl as the client; HTTP against
// nginx with sendfile on; and a simulated rack of machines booting at once
// (DHCP → TFTP iPXE → iPXE script → kernel + initrd).
//
// Every packet stays inside network namespaces the benchmark creates
// (names start with Options.NetPrefix, default "obb") and removes on exit, also after SIGINT (the
// caller cancels ctx). Onramp runs as the real binary, `onramp netboot
// --mode isolated`, in the server namespace. Every loop is bounded in count
// and time.
//
// Method for TFTP and HTTP: the machine may be shared, so Onramp and the
// peer run in A/B rounds, the order alternating (AB, BA, AB, ...), and each
// round's ratio compares two runs seconds apart; the reported ratio is the
// median of the round ratios (Options.Reps rounds; 3 for TFTP, 5 for HTTP).
// Load from other work then shifts both sides of a round alike instead of
// whichever server happened to run during it.
//
// Results are ratios against the peer (> 1 favours Onramp), with
// the goals of issue 6 printed beside them; missing a goal is reported, not
// fatal.
package benchmark

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Options configure a run.
type Options struct {
	Onramp string // path to the onramp binary (required)
	Quick  bool   // a 2–3 minute run: fewer rates, cases and machines
	// Only limits the sections run: "dhcp", "tftp", "http", "rack"; empty = all.
	Only []string
	// LabJSON is read (if present) for the virtual lab's N-guest boot time.
	LabJSON string
	Log     io.Writer // progress lines; nil = discard
	// Reps is how many A/B rounds each TFTP and HTTP case runs (0 = 3 for
	// TFTP and 5 for HTTP, whose runs last well under a second; 1 with
	// Quick). The ratios are the median round's.
	Reps int
	// NetPrefix starts the names of the namespaces and links ("" = "obb").
	NetPrefix string
	// OnrampEnv is added to the onramp process's environment, e.g.
	// "GOMAXPROCS=8" to see what the Go scheduler costs.
	OnrampEnv []string

	work string
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

func (o *Options) want(section string) bool {
	if len(o.Only) == 0 {
		return true
	}
	for _, s := range o.Only {
		if s == section {
			return true
		}
	}
	return false
}

func (o *Options) dhcpRates() []int {
	if o.Quick {
		return []int{500, 1500, 3000}
	}
	return []int{100, 250, 500, 1000, 1500, 2000, 3000, 4000, 6000}
}

func (o *Options) dhcpPeriod() time.Duration {
	if o.Quick {
		return 3 * time.Second
	}
	return 4 * time.Second
}

func (o *Options) tftpCases(files map[string]int64) []tftpCase {
	var cs []tftpCase
	for _, f := range []string{"ipxe.efi", "undionly.kpxe"} {
		for _, blk := range []int{512, 1468} {
			for _, clients := range []int{1, 50} {
				big := files[f] > 8<<20
				if o.Quick && (blk == 512 || (big && clients > 1)) {
					continue
				}
				if big && clients > 1 {
					clients = 10 // 50 × 32 MiB in lock-step TFTP takes minutes per server
				}
				cs = append(cs, tftpCase{file: f, size: files[f], blksize: blk, clients: clients})
			}
		}
	}
	return cs
}

func (o *Options) reps() int {
	if o.Reps > 0 {
		return o.Reps
	}
	if o.Quick {
		return 1
	}
	return 3
}

func (o *Options) httpReps() int {
	if o.Reps > 0 || o.Quick {
		return o.reps()
	}
	return 5
}

func (o *Options) httpClients() []int {
	if o.Quick {
		return []int{1, 20}
	}
	return []int{1, 20, 50}
}

func (o *Options) rackSizes() []int {
	if o.Quick {
		return []int{20}
	}
	return []int{20, 50, 200}
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int               `json:"nproc"`
	CPUModel  string            `json:"cpu_model"`
	Kernel    string            `json:"kernel"`
	GoVersion string            `json:"go_version"`
	Onramp    string            `json:"onramp"`
	Peers     map[string]string `json:"peers"`
}

// Resources is Onramp's footprint from /proc.
type Resources struct {
	Idle  ProcStats `json:"idle"`  // after start-up, before any load
	After ProcStats `json:"after"` // after all load, settled
	// FDGrowth is After.FDs − Idle.FDs: sockets or files left open by the load.
	FDGrowth int `json:"fd_growth"`
	// FDGrowthBesides is FDGrowth less the sockets of discovery's
	// attempts in flight (After.DiscoverAttempts): what the load left open.
	FDGrowthBesides int `json:"fd_growth_besides_discovery"`
	// GoroutineGrowth is the growth in goroutines besides discovery's
	// watches (one a leased machine that has not answered in maintenance
	// mode yet, until it does or 15 minutes pass; After.DiscoverWatching).
	GoroutineGrowth int `json:"goroutine_growth"`
	// SettledS is how long after the load After was taken (≤ 10 s, earlier
	// once the descriptors are back to the idle count).
	SettledS float64 `json:"settled_s"`
}

// Report is the whole run, written as JSON.
type Report struct {
	Started   time.Time       `json:"started"`
	Duration  string          `json:"duration"`
	Quick     bool            `json:"quick"`
	Machine   Machine         `json:"machine"`
	DHCP      []DHCPResult    `json:"dhcp,omitempty"`
	DHCPRatio float64         `json:"dhcp_ratio,omitempty"` // onramp / kea best rate
	TFTP      []Compare       `json:"tftp,omitempty"`
	HTTP      []Compare       `json:"http,omitempty"`
	Rack      []RackRun       `json:"rack,omitempty"`
	Resources *Resources      `json:"resources,omitempty"`
	Lab       json.RawMessage `json:"lab,omitempty"`
	Errors    []string        `json:"errors,omitempty"`
}

// Sizes of the files served.
const (
	BigTFTPSize = 32 << 20
	HTTPSize    = 100 << 20
	KernelSize  = 8 << 20  // the rack's kernel: about a Talos vmlinuz
	InitrdSize  = 32 << 20 // the rack's initrd: scaled down from ~70 MiB so 200 machines fit the time budget
)

// Check says what is missing to run the benchmark (root, peer binaries).
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs root for network namespaces")
	}
	var missing []string
	for _, b := range []string{"ip", "perfdhcp", "kea-dhcp4", "in.tftpd", "nginx", "curl", "udhcpc"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the benchmark needs %s (Debian: kea-admin kea-dhcp4-server tftpd-hpa nginx-light curl udhcpc)", strings.Join(missing, ", "))
	}
	if _, err := os.Stat("/usr/lib/ipxe/ipxe.efi"); err != nil {
		return fmt.Errorf("the benchmark needs /usr/lib/ipxe/ipxe.efi (Debian: ipxe): %w", err)
	}
	return nil
}

// Run runs the benchmark. Sections that fail are recorded in Report.Errors
// and the run goes on; the error is non-nil only when nothing could run.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if o.Onramp == "" {
		return nil, errors.New("no onramp binary given")
	}
	rep := &Report{Started: time.Now(), Quick: o.Quick, Machine: machineInfo(o.Onramp)}
	work, err := os.MkdirTemp("", "onramp-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	o.work = work
	if err := os.WriteFile(o.rackScript(), []byte(udhcpcScript), 0o755); err != nil {
		return nil, err
	}

	// Files: the iPXE directory Onramp serves over TFTP (the real ipxe.efi,
	// and a 32 MiB stand-in under the BIOS name, which carries no PE check),
	// the same files as tftpd-hpa's root, and the HTTP assets.
	ipxeDir := filepath.Join(work, "ipxe")
	tftpRoot := filepath.Join(work, "tftproot")
	assets := filepath.Join(work, "assets")
	real, err := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{ipxeDir, tftpRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		os.Chmod(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, "ipxe.efi"), real, 0o644); err != nil {
			return nil, err
		}
	}
	os.Chmod(work, 0o755) // tftpd-hpa drops to nobody inside its chroot
	if err := fillFile(filepath.Join(ipxeDir, "undionly.kpxe"), BigTFTPSize); err != nil {
		return nil, err
	}
	big, _ := os.ReadFile(filepath.Join(ipxeDir, "undionly.kpxe"))
	if err := os.WriteFile(filepath.Join(tftpRoot, "undionly.kpxe"), big, 0o644); err != nil {
		return nil, err
	}
	big = nil
	tftpFiles := map[string]int64{"ipxe.efi": int64(len(real)), "undionly.kpxe": BigTFTPSize}
	for rel, size := range map[string]int64{"bench/file.bin": HTTPSize, "rack/vmlinuz": KernelSize, "rack/initrd.img": InitrdSize} {
		if err := fillFile(filepath.Join(assets, rel), size); err != nil {
			return nil, err
		}
	}

	n, err := NewNet(ctx, o.NetPrefix)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	o.logf("network: namespaces %s (servers, bridge %s %s/%d) and %s (clients %s)", n.S, n.Bridge, ServerIP, prefixLen, n.C, ClientIP)
	fail := func(section string, err error) {
		msg := fmt.Sprintf("%s: %v", section, err)
		rep.Errors = append(rep.Errors, msg)
		o.logf("ERROR %s", msg)
	}

	if o.want("dhcp") {
		if kea, err := startKea(ctx, n, work); err != nil {
			fail("dhcp (kea)", err)
		} else {
			r, err := benchDHCP(ctx, &o, n, "kea")
			kea.Stop(5 * time.Second)
			if err != nil {
				fail("dhcp (kea)", err)
			}
			rep.DHCP = append(rep.DHCP, r)
		}
	}

	if ctx.Err() != nil {
		return finish(rep, o), nil
	}
	onramp, err := startOnramp(ctx, &o, n, work, ipxeDir, assets)
	if err != nil {
		fail("onramp", err)
		return finish(rep, o), nil
	}
	defer onramp.Stop(10 * time.Second)
	idle, _ := ReadProcStats(onramp.Pid())
	idle.Runtime(onramp)
	rep.Resources = &Resources{Idle: idle}

	if o.want("dhcp") && ctx.Err() == nil {
		r, err := benchDHCP(ctx, &o, n, "onramp")
		if err != nil {
			fail("dhcp (onramp)", err)
		}
		rep.DHCP = append(rep.DHCP, r)
		if len(rep.DHCP) == 2 && rep.DHCP[0].Best != nil && rep.DHCP[1].Best != nil {
			rep.DHCPRatio = float64(rep.DHCP[1].Best.Rate) / float64(rep.DHCP[0].Best.Rate)
		}
	}
	if o.want("tftp") && ctx.Err() == nil {
		if p, err := startTFTPD(ctx, n, work, tftpRoot, "ipxe.efi"); err != nil {
			fail("tftp (tftpd-hpa)", err)
		} else {
			rep.TFTP = benchTFTP(ctx, &o, n, tftpFiles)
			p.Stop(5 * time.Second)
		}
	}
	if o.want("http") && ctx.Err() == nil {
		if p, err := startNginx(ctx, n, work, assets, "bench/file.bin"); err != nil {
			fail("http (nginx)", err)
		} else {
			rep.HTTP = benchHTTP(ctx, &o, n, "bench/file.bin", HTTPSize)
			p.Stop(5 * time.Second)
		}
	}
	if o.want("rack") && ctx.Err() == nil {
		var machines []string
		for _, size := range o.rackSizes() {
			if ctx.Err() != nil {
				break
			}
			more, err := n.AddMachines(ctx, size-len(machines))
			if err != nil {
				fail("rack", err)
				break
			}
			machines = append(machines, more...)
			rep.Rack = append(rep.Rack, benchRack(ctx, &o, machines, onramp))
		}
	}
	if onramp.Exited() {
		fail("onramp", fmt.Errorf("exited during the run:\n%s", onramp.Tail()))
	} else {
		// Let transfers and connections wind down (up to 10 s), then compare.
		var after ProcStats
		start := time.Now()
		for {
			after, _ = ReadProcStats(onramp.Pid())
			after.Runtime(onramp)
			settled := after.FDs-after.DiscoverAttempts <= idle.FDs-idle.DiscoverAttempts &&
				after.Goroutines-after.DiscoverWatching <= idle.Goroutines-idle.DiscoverWatching
			if settled || time.Since(start) > 10*time.Second || ctx.Err() != nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		rep.Resources.After = after
		rep.Resources.SettledS = time.Since(start).Seconds()
		rep.Resources.FDGrowth = after.FDs - idle.FDs
		rep.Resources.FDGrowthBesides = (after.FDs - after.DiscoverAttempts) - (idle.FDs - idle.DiscoverAttempts)
		rep.Resources.GoroutineGrowth = (after.Goroutines - after.DiscoverWatching) - (idle.Goroutines - idle.DiscoverWatching)
	}
	return finish(rep, o), nil
}

func finish(rep *Report, o Options) *Report {
	if b, err := os.ReadFile(o.LabJSON); err == nil && json.Valid(b) {
		rep.Lab = b
	}
	rep.Duration = time.Since(rep.Started).Round(time.Second).String()
	return rep
}

func machineInfo(onramp string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Peers: map[string]string{}}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	version := func(argv ...string) string {
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	m.Onramp = version(onramp, "version")
	m.Peers["kea-dhcp4"] = version("kea-dhcp4", "-v")
	m.Peers["perfdhcp"] = version("perfdhcp", "-v")
	m.Peers["tftpd-hpa"] = version("in.tftpd", "-V")
	m.Peers["nginx"] = version("nginx", "-v")
	m.Peers["curl"] = version("curl", "--version")
	m.Peers["udhcpc"] = version("busybox")
	return m
}

// WriteJSON writes the report to path (directories made as needed).
func (r *Report) WriteJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func goal(ratio, want float64) string {
	if ratio >= want {
		return fmt.Sprintf("≥ %.2f met", want)
	}
	return fmt.Sprintf("≥ %.2f MISSED", want)
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\nOnramp benchmark, %s (%s%s)\n", r.Started.Format(time.RFC3339), r.Duration, map[bool]string{true: ", quick", false: ""}[r.Quick])
	fmt.Fprintf(w, "machine: %d × %s, kernel %s, %s; onramp %s\n", m.CPUs, m.CPUModel, m.Kernel, m.GoVersion, m.Onramp)

	if len(r.DHCP) > 0 {
		fmt.Fprintf(w, "\nDHCP (perfdhcp as relay, full DORA, leases persisted): highest rate with < 1%% loss\n")
		fmt.Fprintf(w, "  %-8s %8s %10s %10s %10s %10s\n", "server", "rate/s", "offer p50", "offer p99", "ack p50", "ack p99")
		for _, d := range r.DHCP {
			if d.Best == nil {
				fmt.Fprintf(w, "  %-8s %8s\n", d.Server, "none")
				continue
			}
			b := d.Best
			fmt.Fprintf(w, "  %-8s %8d %8.2fms %8.2fms %8.2fms %8.2fms\n", d.Server, b.Rate, b.OfferP50, b.OfferP99, b.AckP50, b.AckP99)
		}
		if r.DHCPRatio > 0 {
			fmt.Fprintf(w, "  ratio onramp/kea %.2f  goal %s\n", r.DHCPRatio, goal(r.DHCPRatio, 1))
		}
	}
	table := func(title, peer string, cs []Compare) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n  %-30s %11s %11s %7s %7s  %-15s %s\n", title, "case", "onramp MiB/s", peer+" MiB/s", "tput", "time", "goal", "slowest/median s (onramp | "+peer+")")
		for _, c := range cs {
			fail := ""
			if c.Onramp.Failed+c.Peer.Failed > 0 {
				fail = fmt.Sprintf("  FAILED %d | %d", c.Onramp.Failed, c.Peer.Failed)
			}
			fmt.Fprintf(w, "  %-30s %11.1f %11.1f %7.2f %7.2f  %-15s %.2f/%.2f | %.2f/%.2f%s\n", c.Case, c.Onramp.AggMiBps, c.Peer.AggMiBps,
				c.ThroughputRatio, c.TimeRatio, goal(c.ThroughputRatio, c.Goal), c.Onramp.SlowestS, c.Onramp.MedianS, c.Peer.SlowestS, c.Peer.MedianS, fail)
		}
	}
	table("TFTP (curl clients; ratios onramp/tftpd-hpa, > 1 is better)", "tftpd-hpa", r.TFTP)
	table("HTTP (curl clients; ratios onramp/nginx sendfile, > 1 is better)", "nginx", r.HTTP)
	if len(r.Rack) > 0 {
		lab := "-"
		if len(r.Lab) > 0 {
			lab = string(r.Lab)
		}
		fmt.Fprintf(w, "\nRack boot (udhcpc PXE → TFTP ipxe.efi → udhcpc iPXE → script → %s kernel + %s initrd over HTTP)\n", human(KernelSize), human(InitrdSize))
		fmt.Fprintf(w, "  %8s %6s %10s %9s %9s %10s %10s %9s %8s\n", "machines", "booted", "all done s", "median s", "spread s", "dhcp p50 s", "dhcp max s", "peak RSS", "threads")
		for _, k := range r.Rack {
			fmt.Fprintf(w, "  %8d %6d %10.2f %9.2f %9.2f %10.2f %10.2f %7dMi %8d\n", k.Machines, k.Done, k.AllDoneS, k.MedianS, k.SpreadS, k.DHCPp50S, k.DHCPMaxS, k.PeakRSSKiB>>10, k.PeakThreads)
			if k.FirstFail != "" {
				fmt.Fprintf(w, "    first failure: %s\n", k.FirstFail)
			}
		}
		fmt.Fprintf(w, "  virtual lab (QEMU guests, build/bench/lab.json): %s\n", lab)
	}
	if res := r.Resources; res != nil {
		fmt.Fprintf(w, "\nOnramp resources (/proc, SIGUSR1): idle RSS %d KiB, %d threads, %d fds, %d goroutines; after load RSS %d KiB (peak %d KiB), %d threads, %d fds, %d goroutines of which %d watch machines for maintenance mode, %d discovery attempts in flight (growth besides discovery: %d fds, %d goroutines; %d fds in all; %.1f s after the load)\n",
			res.Idle.RSSKiB, res.Idle.Threads, res.Idle.FDs, res.Idle.Goroutines, res.After.RSSKiB, res.After.HWMKiB, res.After.Threads, res.After.FDs, res.After.Goroutines, res.After.DiscoverWatching, res.After.DiscoverAttempts, res.FDGrowthBesides, res.GoroutineGrowth, res.FDGrowth, res.SettledS)
		fmt.Fprintf(w, "  fds idle %v, after %v\n", res.Idle.FDKinds, res.After.FDKinds)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "ERROR %s\n", e)
	}
}
