package talos

import "github.com/siderolabs/talos/pkg/machinery/config/validation"

// MetalMode is the validation.RuntimeMode of a bare-metal Talos node: it installs to disk
// and does not run in a container. Machinery ships the modes of its own runtime only
// (inside Talos), so clients validating for metal bring their own.
type MetalMode struct{}

var _ validation.RuntimeMode = MetalMode{}

// String implements fmt.Stringer; Talos names this platform "metal".
func (MetalMode) String() string { return "metal" }

// RequiresInstall reports that a metal node installs Talos to its disk.
func (MetalMode) RequiresInstall() bool { return true }

// InContainer reports that a metal node is not a container.
func (MetalMode) InContainer() bool { return false }
