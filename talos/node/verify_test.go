package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"onramp/talos/node"
)

type fakeSource struct {
	sec    node.Security
	secErr error
	vols   []node.Volume
	volErr error
}

func (f fakeSource) Addr() string { return "10.77.0.10:50000" }

func (f fakeSource) Security(context.Context) (node.Security, error) { return f.sec, f.secErr }

func (f fakeSource) Volumes(context.Context) ([]node.Volume, error) { return f.vols, f.volErr }

func TestVerifyReasons(t *testing.T) {
	t.Parallel()

	slot := 0
	good := node.Security{SecureBoot: true, UKISigningKeyFingerprint: "uki", PCRSigningKeyFingerprint: "pcr", BootedWithUKI: true, TPMPresent: true}
	vol := func(id string) node.Volume {
		return node.Volume{ID: id, Phase: "ready", EncryptionProvider: "luks2", KeyTypes: []string{"tpm"}, EncryptionSlot: &slot, TPMPCRs: []int{7}}
	}
	goodVols := []node.Volume{vol("STATE"), vol("EPHEMERAL")}
	want := node.Expected{UKISigningKeyFingerprint: "uki", PCRSigningKeyFingerprint: "pcr"}

	tests := []struct {
		name   string
		src    fakeSource
		want   node.Expected
		reason []string
	}{
		{name: "verified", src: fakeSource{sec: good, vols: goodVols}, want: want},
		{name: "secureboot off", src: fakeSource{sec: node.Security{UKISigningKeyFingerprint: "uki", PCRSigningKeyFingerprint: "pcr"}, vols: goodVols}, want: want,
			reason: []string{"SecureBoot is off (SecurityState.secureBoot=false)"}},
		{name: "uki key differs", src: fakeSource{sec: node.Security{SecureBoot: true, UKISigningKeyFingerprint: "other", PCRSigningKeyFingerprint: "pcr"}, vols: goodVols}, want: want,
			reason: []string{"UKI signing-key fingerprint mismatch: node reports other, expected uki"}},
		{name: "node reports no fingerprints", src: fakeSource{sec: node.Security{SecureBoot: true}, vols: goodVols}, want: want,
			reason: []string{"node reports no UKI signing-key fingerprint, expected uki", "node reports no PCR signing-key fingerprint, expected pcr"}},
		{name: "nothing expected", src: fakeSource{sec: good, vols: goodVols},
			reason: []string{"no expected UKI signing-key fingerprint configured for the site", "no expected PCR signing-key fingerprint configured for the site"}},
		{name: "security unreadable", src: fakeSource{secErr: errors.New("connection refused"), vols: goodVols}, want: want,
			reason: []string{"cannot read SecurityState: connection refused"}},
		{name: "volumes unreadable", src: fakeSource{sec: good, volErr: errors.New("deadline exceeded")}, want: want,
			reason: []string{"cannot read VolumeStatus: deadline exceeded"}},
		{name: "no volumes", src: fakeSource{sec: good}, want: want,
			reason: []string{"STATE: no VolumeStatus reported", "EPHEMERAL: no VolumeStatus reported"}},
		{name: "ephemeral unencrypted", src: fakeSource{sec: good, vols: []node.Volume{vol("STATE"), {ID: "EPHEMERAL", Phase: "ready", EncryptionProvider: "none"}}}, want: want,
			reason: []string{`EPHEMERAL is not encrypted (encryption provider "none")`}},
		{name: "static key only", src: fakeSource{sec: good, vols: []node.Volume{{ID: "STATE", Phase: "ready", EncryptionProvider: "luks2", KeyTypes: []string{"static"}}, vol("EPHEMERAL")}}, want: want,
			reason: []string{"STATE has no TPM key slot (key slots: [static])"}},
		{name: "locked", src: fakeSource{sec: good, vols: []node.Volume{{ID: "STATE", Phase: "failed", EncryptionProvider: "luks2", KeyTypes: []string{"tpm"}, Error: "unseal: policy fail"}, vol("EPHEMERAL")}}, want: want,
			reason: []string{"STATE is failed, not ready: unseal: policy fail"}},
	}

	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			tt.want.Now = func() time.Time { return at }

			ev, err := node.Verify(t.Context(), tt.src, tt.want)
			if err != nil {
				t.Fatal(err)
			}

			if d := cmp.Diff(tt.reason, ev.Reasons); d != "" {
				t.Errorf("reasons (-want +got):\n%s", d)
			}

			if ev.Verified != (len(tt.reason) == 0) || !ev.CheckedAt.Equal(at) || ev.Node != "10.77.0.10:50000" {
				t.Errorf("evidence = %+v", ev)
			}
		})
	}
}
