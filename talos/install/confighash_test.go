package install_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"onramp/talos/install"
)

// The apply step's done update carries the SHA-256 of exactly the config the
// node accepted (the site report lists it); a refused config has none.
func TestApplyReportsConfigHash(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name     string
		applyErr error
	}{
		{"accepted", nil},
		{"refused", errors.New("config refused")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			fc := &fakeClients{nodes: map[string]*fakeNode{"cp-1": {applyErr: tc.applyErr}}}
			rec := &recorder{}
			in := newInstaller(t, testSite(cp1), fc, rec, install.Timeouts{})
			_, _ = in.Run(t.Context(), target(cp1))

			var got []string
			rec.mu.Lock()
			for _, u := range rec.updates[cp1.Key()] {
				if u.ConfigSHA256 != "" {
					if u.Step != install.StepApply || u.State != install.StateDone {
						t.Errorf("hash on %s/%s", u.Step, u.State)
					}
					got = append(got, u.ConfigSHA256)
				}
			}
			rec.mu.Unlock()

			applied := fc.nodes["cp-1"].applied
			if tc.applyErr != nil {
				if len(got) != 0 {
					t.Errorf("refused config has hashes %v", got)
				}
				return
			}
			if len(applied) != 1 || len(got) != 1 {
				t.Fatalf("applied %d configs, %d hashes", len(applied), len(got))
			}
			sum := sha256.Sum256(applied[0])
			if got[0] != hex.EncodeToString(sum[:]) {
				t.Errorf("hash %s is not the applied config's", got[0])
			}
		})
	}
}
