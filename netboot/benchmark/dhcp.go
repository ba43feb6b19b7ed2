package benchmark

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DHCPStep is one perfdhcp run at a fixed rate.
type DHCPStep struct {
	Rate      int     `json:"rate"`     // DORA exchanges/s asked for
	Achieved  float64 `json:"achieved"` // as perfdhcp measured
	Sent      int     `json:"sent"`     // DISCOVERs sent
	Acked     int     `json:"acked"`    // ACKs received
	LossPct   float64 `json:"loss_pct"` // 100 × (1 − acked/sent)
	OfferP50  float64 `json:"offer_p50_ms"`
	OfferP99  float64 `json:"offer_p99_ms"`
	AckP50    float64 `json:"ack_p50_ms"`
	AckP99    float64 `json:"ack_p99_ms"`
	Command   string  `json:"command"`
	ExitError string  `json:"exit_error,omitempty"`
}

// DHCPResult is one server's ladder of rates.
type DHCPResult struct {
	Server string     `json:"server"`
	Steps  []DHCPStep `json:"steps"`
	// Best is the highest step with < 1% loss (nil: none).
	Best *DHCPStep `json:"best,omitempty"`
}

var (
	reSent  = regexp.MustCompile(`sent packets: (\d+)`)
	reRecv  = regexp.MustCompile(`received packets: (\d+)`)
	reRate  = regexp.MustCompile(`Rate: ([0-9.]+) 4-way`)
	reStamp = regexp.MustCompile(`sent / received: ([0-9.]+) / ([0-9.]+)`)
)

// parsePerfdhcp reads a perfdhcp report made with -x t.
func parsePerfdhcp(out string) (DHCPStep, error) {
	var s DHCPStep
	sent := reSent.FindAllStringSubmatch(out, -1)
	recv := reRecv.FindAllStringSubmatch(out, -1)
	if len(sent) < 2 || len(recv) < 2 {
		return s, fmt.Errorf("perfdhcp printed no DISCOVER-OFFER and REQUEST-ACK statistics")
	}
	s.Sent, _ = strconv.Atoi(sent[0][1])
	s.Acked, _ = strconv.Atoi(recv[1][1])
	if m := reRate.FindStringSubmatch(out); m != nil {
		s.Achieved, _ = strconv.ParseFloat(m[1], 64)
	}
	if s.Sent > 0 {
		s.LossPct = 100 * (1 - float64(s.Acked)/float64(s.Sent))
	}
	// The timestamps come in two sections, DISCOVER-OFFER then REQUEST-ACK.
	do, ra, _ := strings.Cut(out, "Timestamps for packets: REQUEST-ACK")
	s.OfferP50, s.OfferP99 = stampPercentiles(do)
	s.AckP50, s.AckP99 = stampPercentiles(ra)
	return s, nil
}

func stampPercentiles(section string) (p50, p99 float64) {
	var d []float64
	for _, m := range reStamp.FindAllStringSubmatch(section, -1) {
		a, _ := strconv.ParseFloat(m[1], 64)
		b, _ := strconv.ParseFloat(m[2], 64)
		d = append(d, (b-a)*1000)
	}
	return percentile(d, 50), percentile(d, 99)
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	i := int(float64(len(v)-1) * p / 100)
	return v[i]
}

func perfdhcpStep(ctx context.Context, o *Options, n *Net, server string, rate, try int) (DHCPStep, error) {
	args := []string{"perfdhcp", "-4", "-l", ClientIP, "-r", strconv.Itoa(rate),
		"-R", "60000", "-s", strconv.Itoa(1 + try), "-p", strconv.Itoa(int(o.dhcpPeriod() / time.Second)),
		"-W", "500000", "-x", "t", ServerIP}
	cctx, cancel := context.WithTimeout(ctx, o.dhcpPeriod()+30*time.Second)
	out, err := nsRun(cctx, n.C, args...)
	cancel()
	os.WriteFile(filepath.Join(o.work, fmt.Sprintf("perfdhcp-%s-%d-%d.txt", server, rate, try)), []byte(out), 0o644)
	step, perr := parsePerfdhcp(out)
	step.Rate = rate
	step.Command = "ip netns exec " + n.C + " " + strings.Join(args, " ")
	if err != nil {
		// perfdhcp exits 3 when packets were dropped: the figures stand.
		step.ExitError = err.Error()
	}
	if perr != nil {
		return step, fmt.Errorf("perfdhcp against %s at %d/s: %w (%v)", server, rate, perr, err)
	}
	return step, nil
}

// benchDHCP runs perfdhcp from the client namespace as a relay agent
// (giaddr = ClientIP, to ServerIP:67) at rising rates, stopping after the
// first rate with ≥ 1% loss.
func benchDHCP(ctx context.Context, o *Options, n *Net, server string) (DHCPResult, error) {
	res := DHCPResult{Server: server}
	// Warm-up, not recorded: the first exchanges after a server starts
	// wait for ARP and first writes, and perfdhcp counts them as drops.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	nsRun(wctx, n.C, "perfdhcp", "-4", "-l", ClientIP, "-r", "50", "-R", "60000", "-s", "7", "-p", "2", "-W", "500000", ServerIP)
	cancel()
	for _, rate := range o.dhcpRates() {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		// A rate with ≥ 1% loss gets a second try before the ladder stops:
		// the machine is shared, and one noisy second should not decide.
		var step DHCPStep
		for try := range 2 {
			var err error
			step, err = perfdhcpStep(ctx, o, n, server, rate, try)
			if err != nil {
				return res, err
			}
			res.Steps = append(res.Steps, step)
			o.logf("dhcp %-8s rate %5d/s: achieved %.0f/s, loss %.2f%%, ack p50 %.2f ms p99 %.2f ms", server, rate, step.Achieved, step.LossPct, step.AckP50, step.AckP99)
			if step.LossPct < 1 {
				break
			}
		}
		if step.LossPct >= 1 {
			break
		}
		best := step
		res.Best = &best
	}
	return res, nil
}
