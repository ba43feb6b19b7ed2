package dhcp

import (
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"PXE-E16: No valid offer received.", "PXE-E16: No valid offer received: DHCP answers came"},
		{"pxe-e51 No DHCP or proxyDHCP offers", "PXE-E51: No DHCP or proxyDHCP offers were received"},
		{"PXE-E53: No boot filename received", "PXE-E53: No boot filename received"},
		{"PXE-EZZ nonsense", ""},
		{"all fine", ""},
	}
	for _, c := range cases {
		got := Explain(c.in)
		if (c.want == "") != (got == "") || !strings.HasPrefix(got, c.want) {
			t.Errorf("Explain(%q) = %q, want prefix %q", c.in, got, c.want)
		}
	}
}
