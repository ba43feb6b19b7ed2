package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
)

// EvidenceSource is what Verify reads; InstalledClient implements it.
type EvidenceSource interface {
	Addr() string
	Security(ctx context.Context) (Security, error)
	Volumes(ctx context.Context) ([]Volume, error)
}

// Expected is what a node of the site must show.
type Expected struct {
	// UKISigningKeyFingerprint and PCRSigningKeyFingerprint are the site image's
	// signing keys, as Talos reports them in SecurityState. Empty = nothing can match,
	// the node is not verified.
	UKISigningKeyFingerprint string `json:"ukiSigningKeyFingerprint"`
	PCRSigningKeyFingerprint string `json:"pcrSigningKeyFingerprint"`
	// Now stamps the evidence (default time.Now).
	Now func() time.Time `json:"-"`
}

// Evidence is the per-node proof of SecureBoot and TPM disk encryption.
type Evidence struct {
	Node                     string    `json:"node"`
	Verified                 bool      `json:"verified"`
	Reasons                  []string  `json:"reasons,omitempty"` // why not verified; empty when verified
	SecureBoot               bool      `json:"secureBoot"`
	BootedWithUKI            bool      `json:"bootedWithUKI"`
	TPMPresent               bool      `json:"tpmPresent"`
	UKISigningKeyFingerprint string    `json:"ukiSigningKeyFingerprint"`
	PCRSigningKeyFingerprint string    `json:"pcrSigningKeyFingerprint"`
	Volumes                  []Volume  `json:"volumes"`
	CheckedAt                time.Time `json:"checkedAt"`
}

// Verify checks one installed node: SecurityState.SecureBoot is true; the UKI and PCR
// signing-key fingerprints equal the expected ones; STATE and EPHEMERAL are LUKS2
// volumes with a TPM key slot, unlocked (phase ready). Anything else, including data
// that cannot be read, makes the node not verified with the exact reasons. The error
// is non-nil only when ctx ends.
func Verify(ctx context.Context, src EvidenceSource, want Expected) (Evidence, error) {
	now := time.Now
	if want.Now != nil {
		now = want.Now
	}

	ev := Evidence{Node: src.Addr()}
	fail := func(format string, args ...any) { ev.Reasons = append(ev.Reasons, fmt.Sprintf(format, args...)) }

	sec, err := src.Security(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ev, ctx.Err()
		}

		fail("cannot read SecurityState: %v", err)
	} else {
		ev.SecureBoot, ev.BootedWithUKI, ev.TPMPresent = sec.SecureBoot, sec.BootedWithUKI, sec.TPMPresent
		ev.UKISigningKeyFingerprint, ev.PCRSigningKeyFingerprint = sec.UKISigningKeyFingerprint, sec.PCRSigningKeyFingerprint

		if !sec.SecureBoot {
			fail("SecureBoot is off (SecurityState.secureBoot=false)")
		}

		checkFpr := func(what, got, exp string) {
			switch {
			case exp == "":
				fail("no expected %s signing-key fingerprint configured for the site", what)
			case got == "":
				fail("node reports no %s signing-key fingerprint, expected %s", what, exp)
			case got != exp:
				fail("%s signing-key fingerprint mismatch: node reports %s, expected %s", what, got, exp)
			}
		}

		checkFpr("UKI", sec.UKISigningKeyFingerprint, want.UKISigningKeyFingerprint)
		checkFpr("PCR", sec.PCRSigningKeyFingerprint, want.PCRSigningKeyFingerprint)
	}

	vols, err := src.Volumes(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ev, ctx.Err()
		}

		fail("cannot read VolumeStatus: %v", err)
	} else {
		ev.Volumes = vols

		for _, name := range []string{constants.StatePartitionLabel, constants.EphemeralPartitionLabel} {
			i := slices.IndexFunc(vols, func(v Volume) bool { return v.ID == name })
			if i < 0 {
				fail("%s: no VolumeStatus reported", name)

				continue
			}

			v := vols[i]

			switch {
			case v.EncryptionProvider != block.EncryptionProviderLUKS2.String():
				fail("%s is not encrypted (encryption provider %q)", name, v.EncryptionProvider)
			case !slices.Contains(v.KeyTypes, block.EncryptionKeyTPM.String()):
				fail("%s has no TPM key slot (key slots: %v)", name, v.KeyTypes)
			}

			if v.Phase != block.VolumePhaseReady.String() {
				msg := v.Error
				if msg == "" {
					msg = "no error message"
				}

				fail("%s is %s, not ready: %s", name, v.Phase, msg)
			}
		}
	}

	ev.Verified = len(ev.Reasons) == 0
	ev.CheckedAt = now().UTC()

	return ev, nil
}
