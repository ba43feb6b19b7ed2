package benchmark

import (
	"math"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// A real `perfdhcp -x t` report (trimmed to five timestamps per section)
// parses into counts, loss and per-exchange latency percentiles.
func TestParsePerfdhcp(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/perfdhcp-xt.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsePerfdhcp(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := DHCPStep{Achieved: 46.8016, Sent: 64, Acked: 64, LossPct: 0,
		OfferP50: 219.024, OfferP99: 234.364, AckP50: 191.527, AckP99: 191.532}
	if d := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-6)); d != "" {
		t.Errorf("parse (-want +got):\n%s", d)
	}
	if _, err := parsePerfdhcp("perfdhcp: cannot open socket"); err == nil {
		t.Error("a report without statistics parsed")
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    []float64
		p    float64
		want float64
	}{
		{nil, 50, 0},
		{[]float64{3}, 99, 3},
		{[]float64{5, 1, 4, 2, 3}, 50, 3},
		{[]float64{5, 1, 4, 2, 3}, 0, 1},
		{[]float64{5, 1, 4, 2, 3}, 100, 5},
	} {
		if got := percentile(tc.v, tc.p); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.v, tc.p, got, tc.want)
		}
	}
}

// Ratios favour Onramp above 1; a peer that moved nothing gives 0, not Inf.
func TestCompare(t *testing.T) {
	t.Parallel()
	c := compare("x", Transfer{AggMiBps: 150, WallS: 2}, Transfer{AggMiBps: 100, WallS: 3}, 1, nil, nil)
	if c.ThroughputRatio != 1.5 || c.TimeRatio != 1.5 {
		t.Errorf("ratios %v %v, want 1.5 1.5", c.ThroughputRatio, c.TimeRatio)
	}
	if c := compare("x", Transfer{AggMiBps: 1, WallS: 1}, Transfer{}, 1, nil, nil); c.ThroughputRatio != 0 {
		t.Errorf("ratio against an empty peer = %v", c.ThroughputRatio)
	}
	// With rounds, the ratio is the median round's, not the medians' ratio.
	c = compare("x", Transfer{AggMiBps: 150, WallS: 2}, Transfer{AggMiBps: 100, WallS: 3}, 1, []float64{0.9, 1.2, 0.7}, []float64{1.1, 1, 3})
	if c.ThroughputRatio != 0.9 || c.TimeRatio != 1.1 {
		t.Errorf("round ratios %v %v, want 0.9 1.1", c.ThroughputRatio, c.TimeRatio)
	}
}

// repeat alternates the order of the two servers round by round and pairs
// each round's runs.
func TestRepeatAlternates(t *testing.T) {
	t.Parallel()
	var order []string
	i := 0
	a := func() Transfer { order = append(order, "a"); i++; return Transfer{AggMiBps: float64(10 * i), WallS: 1} }
	b := func() Transfer { order = append(order, "b"); i++; return Transfer{AggMiBps: float64(10 * i), WallS: 2} }
	on, peer, tput, wall := repeat(3, a, b)
	if d := cmp.Diff([]string{"a", "b", "b", "a", "a", "b"}, order); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
	// Rounds: a=10 b=20, b=30 a=40, a=50 b=60.
	if d := cmp.Diff([]float64{0.5, 40.0 / 30, 50.0 / 60}, tput, cmpopts.EquateApprox(0, 1e-9)); d != "" {
		t.Errorf("throughput ratios (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]float64{2, 2, 2}, wall); d != "" {
		t.Errorf("time ratios (-want +got):\n%s", d)
	}
	if on.AggMiBps != 40 || peer.AggMiBps != 30 || on.Runs != 3 {
		t.Errorf("medians %v %v (%d runs), want 40 30 (3)", on.AggMiBps, peer.AggMiBps, on.Runs)
	}
	if d := cmp.Diff([]float64{10, 40, 50}, on.RunsMiBps); d != "" {
		t.Errorf("onramp runs in round order (-want +got):\n%s", d)
	}
}
