package sim

import (
	"context"
	"errors"
	"fmt"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/dustin/go-humanize"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TPMPresencePCR is the PCRStatus resource the simulator publishes when the node has
// a TPM. Talos 1.14 has no resource that states "a TPM is present"; its
// hardware.PCRStatus resources exist only on a machine with a TPM, so Onramp's
// client reads TPM presence as "PCRStatus 7 exists".
const TPMPresencePCR = 7

// buildState makes this boot's COSI state with the resources Talos publishes in
// maintenance mode: SystemInformation, Disk per disk, LinkStatus per link,
// SecurityState, and PCRStatus when a TPM is present.
func (s *Sim) buildState(ctx context.Context) (state.State, error) {
	st := state.WrapCore(namespaced.NewState(inmem.Build))

	hw, err := s.cfg.Hardware()
	if err != nil {
		return nil, fmt.Errorf("read hardware: %w", err)
	}

	si := hardware.NewSystemInformation(hardware.SystemInformationID)
	si.TypedSpec().Manufacturer = hw.Manufacturer
	si.TypedSpec().ProductName = hw.Product
	si.TypedSpec().Version = hw.Version
	si.TypedSpec().SerialNumber = hw.Serial
	si.TypedSpec().UUID = hw.UUID

	res := []resource.Resource{si}

	disks, err := s.cfg.Disks()
	if err != nil {
		return nil, fmt.Errorf("read disks: %w", err)
	}

	for _, d := range disks {
		r := block.NewDisk(block.NamespaceName, d.Name)
		spec := r.TypedSpec()
		spec.DevPath = "/dev/" + d.Name
		spec.Size = d.Size
		spec.PrettySize = humanize.Bytes(d.Size)
		spec.IOSize = 512
		spec.SectorSize = 512
		spec.Model = d.Model
		spec.Serial = d.Serial
		spec.WWID = d.WWID
		spec.Readonly = d.Readonly
		spec.Rotational = d.Rotational
		spec.CDROM = d.CDROM
		spec.Transport = d.Transport
		res = append(res, r)
	}

	links, err := s.cfg.Links()
	if err != nil {
		return nil, fmt.Errorf("read links: %w", err)
	}

	for _, l := range links {
		r := network.NewLinkStatus(network.NamespaceName, l.Name)
		spec := r.TypedSpec()
		spec.Index = uint32(l.Index)
		spec.Type = nethelpers.LinkEther
		spec.Kind = ""
		spec.HardwareAddr = nethelpers.HardwareAddr(l.MAC)
		spec.PermanentAddr = nethelpers.HardwareAddr(l.MAC)
		spec.MTU = uint32(l.MTU)
		spec.OperationalState = nethelpers.OperStateDown

		if l.Up {
			spec.OperationalState = nethelpers.OperStateUp
			spec.LinkState = true
		}

		res = append(res, r)
	}

	s.mu.Lock()
	fw := s.fw
	s.mu.Unlock()

	sec := runtime.NewSecurityStateSpec(runtime.NamespaceName)
	sec.TypedSpec().SecureBoot = fw.SecureBoot
	sec.TypedSpec().UKISigningKeyFingerprint = s.cfg.UKISigningKeyFingerprint
	sec.TypedSpec().PCRSigningKeyFingerprint = s.cfg.PCRSigningKeyFingerprint
	sec.TypedSpec().BootedWithUKI = s.cfg.BootedWithUKI || fw.BootedWithUKI
	res = append(res, sec)

	if s.cfg.TPM != nil {
		res = append(res, hardware.NewPCCRStatus(TPMPresencePCR))
	}

	for _, r := range res {
		if err := st.Create(ctx, r); err != nil {
			return nil, fmt.Errorf("create %s %s: %w", r.Metadata().Type(), r.Metadata().ID(), err)
		}
	}

	return st, nil
}

// readOnly is the COSI state as the API exposes it: Talos does not let API clients
// write these resources.
type readOnly struct {
	state.CoreState
}

var errReadOnly = status.Error(codes.PermissionDenied, "resources are read-only")

func (readOnly) Create(context.Context, resource.Resource, ...state.CreateOption) error {
	return errReadOnly
}

func (readOnly) Update(context.Context, resource.Resource, ...state.UpdateOption) error {
	return errReadOnly
}

func (readOnly) Destroy(context.Context, resource.Pointer, ...state.DestroyOption) error {
	return errReadOnly
}

func isServerStopped(err error) bool { return errors.Is(err, grpc.ErrServerStopped) }
