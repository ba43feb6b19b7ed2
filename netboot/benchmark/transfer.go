package benchmark

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Transfer is one server delivering one file to a number of concurrent
// curl clients in the client namespace.
type Transfer struct {
	Server    string    `json:"server"`
	URL       string    `json:"url"`
	Size      int64     `json:"size"`
	BlkSize   int       `json:"blksize,omitempty"`
	Clients   int       `json:"clients"`
	WallS     float64   `json:"wall_s"`    // first start to last finish
	AggMiBps  float64   `json:"agg_mib_s"` // bytes delivered / WallS
	MedianS   float64   `json:"median_s"`  // median client's completion time
	SlowestS  float64   `json:"slowest_s"` // slowest client's completion time
	Failed    int       `json:"failed"`    // clients that got an error or short file
	FirstFail string    `json:"first_fail,omitempty"`
	Command   string    `json:"command"`
	Runs      int       `json:"runs"`       // repetitions; the figures are the median run's
	RunsMiBps []float64 `json:"runs_mib_s"` // every run's aggregate throughput
}

// Compare is Onramp and a peer doing the same work; ratios > 1 favour Onramp.
//
// With several A/B rounds the ratios are the medians of the per-round
// ratios (RoundTput, RoundTime), not the ratio of the two median runs.
type Compare struct {
	Case            string    `json:"case"`
	Onramp          Transfer  `json:"onramp"`
	Peer            Transfer  `json:"peer"`
	ThroughputRatio float64   `json:"throughput_ratio"` // onramp / peer aggregate throughput
	TimeRatio       float64   `json:"time_ratio"`       // peer wall / onramp wall
	RoundTput       []float64 `json:"round_tput_ratios,omitempty"`
	RoundTime       []float64 `json:"round_time_ratios,omitempty"`
	Goal            float64   `json:"goal"`
}

// fetch runs clients curl processes at once against url, each with extra
// arguments, and measures them.
func fetch(ctx context.Context, n *Net, server, url string, size int64, clients int, timeout time.Duration, extra ...string) Transfer {
	return fetchN(ctx, n, server, url, size, clients, 1, timeout, extra...)
}

// fetchN is fetch with each client downloading url times times in a row
// over one connection (curl reuses it): a single 100 MiB download over a
// veth takes ~30 ms, too short to time against another server; ten are
// not. Size and the client's time are then the sums.
func fetchN(ctx context.Context, n *Net, server, url string, size int64, clients, repeatN int, timeout time.Duration, extra ...string) Transfer {
	repeatN = max(repeatN, 1)
	tr := Transfer{Server: server, URL: url, Size: size * int64(repeatN), Clients: clients}
	size *= int64(repeatN)
	curl := append([]string{"curl", "-sS", "--max-time", strconv.Itoa(int(timeout / time.Second)),
		"-w", "'%{time_total} %{size_download}\\n'"}, extra...)
	for range repeatN {
		curl = append(curl, "-o", "/dev/null", "'"+url+"'")
	}
	// The clock starts inside the namespace right before curl, so the cost
	// of entering the namespace is not counted against either server. Each
	// download prints its time and size; awk sums them.
	script := "s=$(date +%s.%N); " + strings.Join(curl, " ") + " | awk -v s=$s '{t+=$1; b+=$2} END {printf \"%f %.0f %s\\n\", t, b, s}'"
	if repeatN > 1 {
		tr.Command = fmt.Sprintf("%d × ip netns exec %s %s (%d downloads each)", clients, n.C, strings.Join(curl[:len(curl)-2*(repeatN-1)], " "), repeatN)
	} else {
		tr.Command = fmt.Sprintf("%d × ip netns exec %s %s", clients, n.C, strings.Join(curl, " "))
	}
	var (
		mu         sync.Mutex
		times      []float64
		wg         sync.WaitGroup
		bytes      int64
		first, end float64
	)
	for range clients {
		wg.Go(func() {
			out, err := nsRun(ctx, n.C, "sh", "-c", script)
			var secs, at float64
			var got int64
			f := strings.Fields(out)
			if len(f) == 3 {
				secs, _ = strconv.ParseFloat(f[0], 64)
				got, _ = strconv.ParseInt(f[1], 10, 64)
				at, _ = strconv.ParseFloat(f[2], 64)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil || got != size || at == 0 {
				tr.Failed++
				if tr.FirstFail == "" {
					tr.FirstFail = fmt.Sprintf("got %d of %d bytes: %v", got, size, err)
				}
			}
			if at > 0 {
				if first == 0 || at < first {
					first = at
				}
				end = max(end, at+secs)
			}
			bytes += got
			times = append(times, secs)
		})
	}
	wg.Wait()
	tr.WallS = end - first
	if tr.WallS > 0 {
		tr.AggMiBps = float64(bytes) / (1 << 20) / tr.WallS
	}
	tr.MedianS = percentile(times, 50)
	tr.SlowestS = percentile(times, 100)
	return tr
}

func compare(name string, on, peer Transfer, goal float64, tput, wall []float64) Compare {
	c := Compare{Case: name, Onramp: on, Peer: peer, Goal: goal, RoundTput: tput, RoundTime: wall}
	if peer.AggMiBps > 0 {
		c.ThroughputRatio = on.AggMiBps / peer.AggMiBps
	}
	if on.WallS > 0 {
		c.TimeRatio = peer.WallS / on.WallS
	}
	if len(tput) > 0 {
		c.ThroughputRatio = percentile(tput, 50)
	}
	if len(wall) > 0 {
		c.TimeRatio = percentile(wall, 50)
	}
	return c
}

type tftpCase struct {
	file    string
	size    int64
	blksize int
	clients int
}

// benchTFTP compares Onramp's TFTP (port 69) with tftpd-hpa (TFTPDPort)
// serving the same files, curl as the client.
func benchTFTP(ctx context.Context, o *Options, n *Net, files map[string]int64) []Compare {
	var out []Compare
	for _, c := range o.tftpCases(files) {
		if ctx.Err() != nil {
			break
		}
		timeout := 300 * time.Second
		blk := []string{"--tftp-blksize", strconv.Itoa(c.blksize)}
		on, peer, tput, wall := repeat(o.reps(), func() Transfer {
			return fetch(ctx, n, "onramp", fmt.Sprintf("tftp://%s/%s", ServerIP, c.file), c.size, c.clients, timeout, blk...)
		}, func() Transfer {
			return fetch(ctx, n, "tftpd-hpa", fmt.Sprintf("tftp://%s:%d/%s", ServerIP, TFTPDPort, c.file), c.size, c.clients, timeout, blk...)
		})
		on.BlkSize, peer.BlkSize = c.blksize, c.blksize
		name := fmt.Sprintf("TFTP %s blksize %d × %d", human(c.size), c.blksize, c.clients)
		c := compare(name, on, peer, 1.0, tput, wall)
		o.logf("%-34s onramp %7.1f MiB/s  tftpd-hpa %7.1f MiB/s  ratio %.2f (rounds %s) (failed %d/%d)", name, on.AggMiBps, peer.AggMiBps, c.ThroughputRatio, fmtRatios(tput), on.Failed, peer.Failed)
		out = append(out, c)
	}
	return out
}

// benchHTTP compares Onramp's /assets/ with nginx (sendfile on) serving the
// same directory.
func benchHTTP(ctx context.Context, o *Options, n *Net, rel string, size int64) []Compare {
	var out []Compare
	for _, clients := range o.httpClients() {
		if ctx.Err() != nil {
			break
		}
		timeout := 300 * time.Second
		// One client: ten downloads in a row (see fetchN).
		times := 1
		if clients == 1 {
			times = 10
		}
		on, peer, tput, wall := repeat(o.httpReps(), func() Transfer {
			return fetchN(ctx, n, "onramp", fmt.Sprintf("http://%s:%d/assets/%s", ServerIP, OnrampHTTPPort, rel), size, clients, times, timeout)
		}, func() Transfer {
			return fetchN(ctx, n, "nginx", fmt.Sprintf("http://%s:%d/assets/%s", ServerIP, NginxPort, rel), size, clients, times, timeout)
		})
		name := fmt.Sprintf("HTTP %s × %d", human(size), clients)
		if times > 1 {
			name += fmt.Sprintf(" (×%d in a row)", times)
		}
		c := compare(name, on, peer, 0.95, tput, wall)
		o.logf("%-34s onramp %7.1f MiB/s  nginx %7.1f MiB/s  ratio %.2f (rounds %s) (failed %d/%d)", name, on.AggMiBps, peer.AggMiBps, c.ThroughputRatio, fmtRatios(tput), on.Failed, peer.Failed)
		out = append(out, c)
	}
	return out
}

// repeat runs Onramp (a) and the peer (b) reps times in A/B rounds whose
// order alternates (AB, BA, AB, ...), so load from other work on a shared
// machine and warm-up effects hit both alike. It keeps each one's median
// run by aggregate throughput, and returns the per-round ratios a/b of
// throughput and of completion time (peer wall / onramp wall): a ratio
// within one round compares runs seconds apart, which is what the goal is
// judged on (their median).
func repeat(reps int, a, b func() Transfer) (on, peer Transfer, tput, wall []float64) {
	var as, bs []Transfer
	for i := range reps {
		var x, y Transfer
		if i%2 == 0 {
			x = a()
			y = b()
		} else {
			y = b()
			x = a()
		}
		as, bs = append(as, x), append(bs, y)
		if y.AggMiBps > 0 {
			tput = append(tput, x.AggMiBps/y.AggMiBps)
		}
		if x.WallS > 0 {
			wall = append(wall, y.WallS/x.WallS)
		}
	}
	med := func(ts []Transfer) Transfer {
		runs := make([]float64, 0, len(ts))
		for _, t := range ts {
			runs = append(runs, t.AggMiBps)
		}
		ts = slices.Clone(ts)
		slices.SortFunc(ts, func(p, q Transfer) int { return cmp.Compare(p.AggMiBps, q.AggMiBps) })
		m := ts[len(ts)/2]
		m.Runs = len(ts)
		m.RunsMiBps = runs
		return m
	}
	return med(as), med(bs), tput, wall
}

func fmtRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r, 'f', 2, 64)
	}
	return strings.Join(parts, " ")
}

func human(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
