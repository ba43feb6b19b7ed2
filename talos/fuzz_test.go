package talos

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	blockpb "github.com/siderolabs/talos/pkg/machinery/api/resource/definitions/block"
	"github.com/siderolabs/talos/pkg/machinery/cel/celenv"
)

// FuzzParseSite checks that any site that parses survives a YAML round trip unchanged
// and that validation never panics.
func FuzzParseSite(f *testing.F) {
	if data, err := os.ReadFile("testdata/site.yaml"); err == nil {
		f.Add(data)
	}

	f.Add([]byte(minimalSite))
	f.Add([]byte("cluster: a\nmachines: [{mac: x, installDisk: {minSize: 1TB}}]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		site, err := ParseSite(data)
		if err != nil {
			return
		}

		_ = site.Problems()

		out, err := site.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}

		back, err := ParseSite(out)
		if err != nil {
			t.Fatalf("re-parse of marshalled site: %v\n%s", err, out)
		}

		// An empty list and an absent one are the same site.
		if diff := cmp.Diff(site, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip changed the site (-want +got):\n%s", diff)
		}
	})
}

// FuzzDiskSelector checks that a selector built from a disk's identity always compiles
// and matches that disk, whatever bytes the identity holds.
func FuzzDiskSelector(f *testing.F) {
	f.Add("S5GXNX0T123456", "naa.5000c500a1b2c3d4", "SAMSUNG MZ7LH960", uint64(960e9))
	f.Add(`quote " back \ slash`, "", "ü\u2028", uint64(1))
	f.Add("\xff\xfe", "eui.0025", "", uint64(0))

	f.Fuzz(func(t *testing.T, serial, wwid, model string, size uint64) {
		sel := DiskSelector{Serial: serial, WWID: wwid, Model: model, MinSize: "1"}

		expr, err := sel.Compile()
		if err != nil {
			if len(sel.problems("installDisk")) == 0 {
				t.Fatalf("Compile failed without a reported problem: %v", err)
			}

			return
		}

		disk := &blockpb.DiskSpec{Serial: serial, Wwid: wwid, Model: model, Size: size}

		match, err := expr.EvalBool(celenv.DiskLocator(), map[string]any{"disk": disk, "system_disk": false})
		if err != nil {
			t.Fatalf("EvalBool: %v", err)
		}

		if want := size >= 1; match != want {
			t.Fatalf("selector %s on its own disk (size %d) = %v, want %v", expr, size, match, want)
		}
	})
}
