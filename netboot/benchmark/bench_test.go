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
	c := compare("x", Transfer{AggMiBps: 150, WallS: 2}, Transfer{AggMiBps: 100, WallS: 3}, 1)
	if c.ThroughputRatio != 1.5 || c.TimeRatio != 1.5 {
		t.Errorf("ratios %v %v, want 1.5 1.5", c.ThroughputRatio, c.TimeRatio)
	}
	if c := compare("x", Transfer{AggMiBps: 1, WallS: 1}, Transfer{}, 1); c.ThroughputRatio != 0 {
		t.Errorf("ratio against an empty peer = %v", c.ThroughputRatio)
	}
}
