package node

import (
	"context"
	"fmt"
	"slices"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// Hardware is the node's SMBIOS system information.
type Hardware struct {
	Vendor  string `json:"vendor"`
	Product string `json:"product"`
	Serial  string `json:"serial"`
	UUID    string `json:"uuid"`
}

// Disk is one block device the node sees.
type Disk struct {
	ID        string `json:"id"`
	DevPath   string `json:"devPath"`
	Size      uint64 `json:"size"`
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	WWID      string `json:"wwid,omitempty"`
	Transport string `json:"transport,omitempty"`
	Readonly  bool   `json:"readonly,omitempty"`
	CDROM     bool   `json:"cdrom,omitempty"`
}

// Link is one network link.
type Link struct {
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	LinkUp bool   `json:"linkUp"`
}

// Security is what the node reports about its boot chain.
type Security struct {
	SecureBoot               bool   `json:"secureBoot"`
	UKISigningKeyFingerprint string `json:"ukiSigningKeyFingerprint,omitempty"`
	PCRSigningKeyFingerprint string `json:"pcrSigningKeyFingerprint,omitempty"`
	BootedWithUKI            bool   `json:"bootedWithUKI"`
	TPMPresent               bool   `json:"tpmPresent"`
}

// Volume is a system volume's status (STATE, EPHEMERAL, ...).
type Volume struct {
	ID                 string   `json:"id"`
	Phase              string   `json:"phase"`
	EncryptionProvider string   `json:"encryptionProvider"` // luks2 or none
	KeyTypes           []string `json:"keyTypes,omitempty"` // configured key slot types: tpm, static, nodeid, kms
	EncryptionSlot     *int     `json:"encryptionSlot,omitempty"`
	TPMPCRs            []int    `json:"tpmPcrs,omitempty"`
	TPMPubKeyPCRs      []int    `json:"tpmPubKeyPcrs,omitempty"`
	Error              string   `json:"error,omitempty"`
}

// TPMEncrypted says the volume is LUKS2-encrypted with a TPM key slot and unlocked.
func (v Volume) TPMEncrypted() bool {
	return v.EncryptionProvider == block.EncryptionProviderLUKS2.String() && slices.Contains(v.KeyTypes, block.EncryptionKeyTPM.String())
}

func readHardware(ctx context.Context, st state.State) (Hardware, error) {
	si, err := safe.StateGetByID[*hardware.SystemInformation](ctx, st, hardware.SystemInformationID)
	if err != nil {
		return Hardware{}, fmt.Errorf("read system information: %w", err)
	}

	s := si.TypedSpec()

	return Hardware{Vendor: s.Manufacturer, Product: s.ProductName, Serial: s.SerialNumber, UUID: s.UUID}, nil
}

func readDisks(ctx context.Context, st state.State) ([]Disk, error) {
	list, err := safe.StateListAll[*block.Disk](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}

	var out []Disk

	for d := range list.All() {
		s := d.TypedSpec()
		out = append(out, Disk{
			ID: d.Metadata().ID(), DevPath: s.DevPath, Size: s.Size, Model: s.Model, Serial: s.Serial,
			WWID: s.WWID, Transport: s.Transport, Readonly: s.Readonly, CDROM: s.CDROM,
		})
	}

	return out, nil
}

func readLinks(ctx context.Context, st state.State) ([]Link, error) {
	list, err := safe.StateListAll[*network.LinkStatus](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}

	var out []Link

	for l := range list.All() {
		s := l.TypedSpec()
		out = append(out, Link{Name: l.Metadata().ID(), MAC: s.HardwareAddr.String(), LinkUp: s.LinkState})
	}

	return out, nil
}

func readSecurity(ctx context.Context, st state.State) (Security, error) {
	ss, err := safe.StateGetByID[*runtime.SecurityState](ctx, st, runtime.SecurityStateID)
	if err != nil {
		return Security{}, fmt.Errorf("read security state: %w", err)
	}

	s := ss.TypedSpec()
	out := Security{
		SecureBoot:               s.SecureBoot,
		UKISigningKeyFingerprint: s.UKISigningKeyFingerprint,
		PCRSigningKeyFingerprint: s.PCRSigningKeyFingerprint,
		BootedWithUKI:            s.BootedWithUKI,
	}

	// Talos publishes PCRStatus resources only when it has a TPM.
	pcrs, err := safe.StateListAll[*hardware.PCRStatus](ctx, st)
	if err != nil {
		return Security{}, fmt.Errorf("list PCR status: %w", err)
	}

	out.TPMPresent = pcrs.Len() > 0

	return out, nil
}

func readVolumes(ctx context.Context, st state.State) ([]Volume, error) {
	list, err := safe.StateListAll[*block.VolumeStatus](ctx, st)
	if err != nil {
		return nil, fmt.Errorf("list volume status: %w", err)
	}

	var out []Volume

	for v := range list.All() {
		s := v.TypedSpec()
		out = append(out, Volume{
			ID:                 v.Metadata().ID(),
			Phase:              s.Phase.String(),
			EncryptionProvider: s.EncryptionProvider.String(),
			KeyTypes:           slices.Clone(s.ConfiguredEncryptionKeys),
			EncryptionSlot:     s.EncryptionSlot,
			TPMPCRs:            slices.Clone(s.TPMEncryptionOptions.PCRs),
			TPMPubKeyPCRs:      slices.Clone(s.TPMEncryptionOptions.PubKeyPCRs),
			Error:              s.ErrorMessage,
		})
	}

	return out, nil
}
