package talos

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/labels"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
)

// Problem is one validation failure at a field path such as "machines[2].installDisk.serial".
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// ValidationError lists every problem found in a site.
type ValidationError struct {
	Problems []Problem `json:"problems"`
}

func (e *ValidationError) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		lines = append(lines, p.String())
	}

	return fmt.Sprintf("invalid site (%d problems):\n  %s", len(e.Problems), strings.Join(lines, "\n  "))
}

var (
	// dnsLabelRe is an RFC 1123 label.
	dnsLabelRe   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	k8sVersionRe = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	uuidRe       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	schematicRe  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	sha256HexRe  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// imageRefRe is a loose OCI reference: [registry[:port]/]path[:tag][@sha256:digest].
	imageRefRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._:/-]*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$`)
)

// validator collects problems.
type validator struct{ ps []Problem }

func (v *validator) add(path, format string, args ...any) {
	v.ps = append(v.ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Validate checks the whole site (with defaults applied to a copy) and returns a
// *ValidationError listing every problem, or nil.
func (s *Site) Validate() error {
	if ps := s.Problems(); len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}

	return nil
}

// Problems returns every problem in the site, in field order.
func (s *Site) Problems() []Problem {
	c := s.withDefaults()
	v := &validator{}

	c.validateCluster(v)
	c.validateNetwork(v)
	c.validateRegistries(v)
	c.validateEncryption(v)
	c.validateHandoff(v)
	c.validateEvents(v)
	c.validateSecureBoot(v)
	c.validateMachines(v, true)

	return v.ps
}

// withDefaults returns a defaulted copy that shares nothing mutable with s.
func (s *Site) withDefaults() *Site {
	c := *s
	c.Machines = slices.Clone(s.Machines)
	c.ApplyDefaults()

	return &c
}

func (s *Site) validateCluster(v *validator) {
	switch {
	case s.Cluster == "":
		v.add("cluster", "is required")
	case !dnsLabelRe.MatchString(s.Cluster):
		v.add("cluster", "%q must be lower-case letters, digits and '-', at most 63 characters", s.Cluster)
	}

	if contract, err := config.ParseContractFromVersion(s.TalosVersion); err != nil {
		v.add("talosVersion", "%q is not a Talos version (want e.g. %s)", s.TalosVersion, DefaultTalosVersion)
	} else if contract.Major != 1 || contract.Minor != 14 {
		v.add("talosVersion", "%s is not supported: this generator builds Talos v1.14 documents", s.TalosVersion)
	}

	if !k8sVersionRe.MatchString(s.KubernetesVersion) {
		v.add("kubernetesVersion", "%q is not a version like %s (no leading v)", s.KubernetesVersion, defaultKubernetesVersion)
	}

	if s.Endpoint == "" {
		v.add("endpoint", "is required (https://VIP-or-first-node:6443)")
	} else if u, err := url.Parse(s.Endpoint); err != nil {
		v.add("endpoint", "%v", err)
	} else if u.Scheme != "https" || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		v.add("endpoint", "%q must look like https://host:6443", s.Endpoint)
	}

	if !schematicRe.MatchString(s.Schematic) {
		v.add("schematic", "%q is not an Image Factory schematic ID (64 hex digits)", s.Schematic)
	}

	if !imageRefRe.MatchString(s.Installer) || !strings.Contains(s.Installer, "/") {
		v.add("installer", "%q is not an image reference like %s/<schematic>:%s", s.Installer, DefaultInstallerRepository, s.TalosVersion)
	}

	if s.InstallDisk != nil {
		v.ps = append(v.ps, s.InstallDisk.problems("installDisk")...)
	}
}

func (s *Site) validateNetwork(v *validator) {
	for i, ns := range s.Network.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			v.add(fmt.Sprintf("network.nameservers[%d]", i), "%q is not an IP address", ns)
		}
	}

	for i, ntp := range s.Network.NTPServers {
		if ntp == "" || strings.ContainsAny(ntp, " /") {
			v.add(fmt.Sprintf("network.ntpServers[%d]", i), "%q is not a host name or address", ntp)
		}
	}

	if s.Network.VLAN > 4094 {
		v.add("network.vlan", "%d is out of range (1-4094)", s.Network.VLAN)
	}

	if b := s.Network.Bond; b != nil {
		if _, err := nethelpers.BondModeByName(b.Mode); err != nil {
			v.add("network.bond.mode", "%q is not a bonding mode (balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb)", b.Mode)
		}

		if len(b.Links) == 0 {
			v.add("network.bond.links", "at least one member link is required")
		}

		for i, l := range b.Links {
			if l == "" || strings.ContainsAny(l, " /") {
				v.add(fmt.Sprintf("network.bond.links[%d]", i), "%q is not a link name", l)
			}
		}
	}
}

func (s *Site) validateRegistries(v *validator) {
	seen := map[string]int{}

	for i, m := range s.RegistryMirrors {
		p := fmt.Sprintf("registryMirrors[%d]", i)

		if m.Registry == "" || strings.ContainsAny(m.Registry, " /") {
			v.add(p+".registry", "%q is not a registry host (e.g. docker.io, factory.talos.dev)", m.Registry)
		} else if j, dup := seen[m.Registry]; dup {
			v.add(p+".registry", "%q is already mirrored by registryMirrors[%d]", m.Registry, j)
		} else {
			seen[m.Registry] = i
		}

		if len(m.Endpoints) == 0 {
			v.add(p+".endpoints", "at least one endpoint is required")
		}

		for j, ep := range m.Endpoints {
			if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(fmt.Sprintf("%s.endpoints[%d]", p, j), "%q is not an http(s) URL", ep)
			}
		}
	}
}

func (s *Site) validateEncryption(v *validator) {
	switch s.Encryption.PCRs {
	case PCRPolicy7And11, PCRPolicy11Only:
	default:
		v.add("encryption.pcrs", "%q is not a PCR policy (%q or %q)", s.Encryption.PCRs, PCRPolicy7And11, PCRPolicy11Only)
	}

	r := s.Encryption.Recovery

	switch r.Type {
	case RecoveryNone, RecoveryStatic:
		if r.KMSEndpoint != "" {
			v.add("encryption.recovery.kmsEndpoint", "is only used with type %q", RecoveryKMS)
		}
	case RecoveryKMS:
		if u, err := url.Parse(r.KMSEndpoint); err != nil || u.Scheme != "https" || u.Host == "" {
			v.add("encryption.recovery.kmsEndpoint", "%q is not an https URL", r.KMSEndpoint)
		}
	default:
		v.add("encryption.recovery.type", "%q is not a recovery key type (%q or %q)", r.Type, RecoveryStatic, RecoveryKMS)
	}
}

func (s *Site) validateHandoff(v *validator) {
	switch s.Handoff.Target {
	case HandoffNone, "none", HandoffBundle:
		if s.Handoff.Omni != nil {
			v.add("handoff.omni", "is only used with target %q", HandoffOmni)
		}
	case HandoffOmni:
		o := s.Handoff.Omni
		if o == nil {
			v.add("handoff.omni", "is required for target %q", HandoffOmni)

			return
		}

		if u, err := url.Parse(o.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "grpc") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			v.add("handoff.omni.apiUrl", "%q must be an https:// or grpc:// URL without a path", o.APIURL)
		} else if u.Query().Has("jointoken") {
			v.add("handoff.omni.apiUrl", "put the join token in joinToken, not in the URL")
		}

		if o.JoinToken == "" {
			v.add("handoff.omni.joinToken", "is required")
		}
	default:
		v.add("handoff.target", "%q is not a handoff target (none, omni, bundle)", s.Handoff.Target)
	}
}

func (s *Site) validateEvents(v *validator) {
	if s.Events.Sink != "" {
		if host, port, err := net.SplitHostPort(s.Events.Sink); err != nil || host == "" || port == "" {
			v.add("events.sink", "%q must be host:port", s.Events.Sink)
		}
	}

	if s.Events.Kmsg != "" {
		if u, err := url.Parse(s.Events.Kmsg); err != nil || (u.Scheme != "tcp" && u.Scheme != "udp") || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			v.add("events.kmsg", "%q must be tcp://host:port or udp://host:port", s.Events.Kmsg)
		}
	}
}

// validateSecureBoot checks the expected signing-key fingerprints when set; empty ones
// are allowed here (the Install step refuses to start without them).
func (s *Site) validateSecureBoot(v *validator) {
	for _, f := range []struct{ path, value string }{
		{"secureBoot.ukiSigningKeyFingerprint", s.SecureBoot.UKISigningKeyFingerprint},
		{"secureBoot.pcrSigningKeyFingerprint", s.SecureBoot.PCRSigningKeyFingerprint},
	} {
		if f.value != "" && !sha256HexRe.MatchString(f.value) {
			v.add(f.path, "%q is not a SHA-256 fingerprint (64 lower-case hex digits)", f.value)
		}
	}
}

// validateMachines checks every machine; requireCP asks for at least one control plane.
func (s *Site) validateMachines(v *validator, requireCP bool) {
	var (
		macs      = map[string]int{}
		uuids     = map[string]int{}
		hostnames = map[string]int{}
		addresses = map[netip.Addr]int{}
		cps       int
	)

	for i, m := range s.Machines {
		p := fmt.Sprintf("machines[%d]", i)

		if m.MAC == "" && m.UUID == "" {
			v.add(p, "set mac or uuid to identify the machine")
		}

		if m.MAC != "" {
			if hw, err := net.ParseMAC(m.MAC); err != nil || len(hw) != 6 {
				v.add(p+".mac", "%q is not an Ethernet MAC address", m.MAC)
			} else if j, dup := macs[hw.String()]; dup {
				v.add(p+".mac", "%s is also machines[%d]", hw, j)
			} else {
				macs[hw.String()] = i
			}
		}

		if m.UUID != "" {
			if !uuidRe.MatchString(m.UUID) {
				v.add(p+".uuid", "%q is not a UUID", m.UUID)
			} else if j, dup := uuids[strings.ToLower(m.UUID)]; dup {
				v.add(p+".uuid", "%s is also machines[%d]", m.UUID, j)
			} else {
				uuids[strings.ToLower(m.UUID)] = i
			}
		}

		switch m.Role {
		case RoleControlPlane:
			cps++
		case RoleWorker:
		case "":
			v.add(p+".role", "is required (controlplane or worker)")
		default:
			v.add(p+".role", "%q is not a role (controlplane or worker)", m.Role)
		}

		switch {
		case m.Hostname == "":
			v.add(p+".hostname", "is required")
		case !dnsLabelRe.MatchString(m.Hostname):
			v.add(p+".hostname", "%q must be one lower-case DNS label (letters, digits, '-')", m.Hostname)
		default:
			if j, dup := hostnames[m.Hostname]; dup {
				v.add(p+".hostname", "%q is also machines[%d]", m.Hostname, j)
			} else {
				hostnames[m.Hostname] = i
			}
		}

		switch {
		case m.InstallDisk != nil:
			v.ps = append(v.ps, m.InstallDisk.problems(p+".installDisk")...)
		case s.InstallDisk == nil:
			v.add(p+".installDisk", "is required (or set the site's installDisk)")
		}

		if m.Interface != "" && strings.ContainsAny(m.Interface, " /") {
			v.add(p+".interface", "%q is not a link name", m.Interface)
		}

		s.validateAddressing(v, p, i, m, addresses)
		validateLabels(v, p+".labels", m.Labels)
	}

	if requireCP && len(s.Machines) > 0 && cps == 0 {
		v.add("machines", "at least one machine must have role controlplane")
	}
}

func (s *Site) validateAddressing(v *validator, p string, i int, m Machine, addresses map[netip.Addr]int) {
	a := m.Addressing

	switch a.Mode {
	case AddressingDHCP:
		if a.Address != "" || a.Gateway != "" {
			v.add(p+".addressing", "address and gateway are only used with mode static")
		}
	case AddressingStatic:
		prefix, err := netip.ParsePrefix(a.Address)
		if err != nil {
			v.add(p+".addressing.address", "%q is not an address in CIDR form (10.77.0.11/24)", a.Address)
		} else if prefix.Addr() == prefix.Masked().Addr() && prefix.Bits() < prefix.Addr().BitLen()-1 {
			v.add(p+".addressing.address", "%s is a network address, not a host address", a.Address)
		} else if j, dup := addresses[prefix.Addr()]; dup {
			v.add(p+".addressing.address", "%s is also used by machines[%d]", prefix.Addr(), j)
		} else {
			addresses[prefix.Addr()] = i
		}

		if a.Gateway != "" {
			gw, err := netip.ParseAddr(a.Gateway)

			switch {
			case err != nil:
				v.add(p+".addressing.gateway", "%q is not an IP address", a.Gateway)
			case prefix.IsValid() && !prefix.Masked().Contains(gw):
				v.add(p+".addressing.gateway", "%s is not inside %s", gw, prefix.Masked())
			case prefix.IsValid() && gw == prefix.Addr():
				v.add(p+".addressing.gateway", "%s is the machine's own address", gw)
			}
		}

		if m.MAC == "" && m.Interface == "" && s.Network.Bond == nil {
			v.add(p+".interface", "is required for static addressing when mac is not set")
		}
	default:
		v.add(p+".addressing.mode", "%q is not an addressing mode (dhcp or static)", a.Mode)
	}

	if s.Network.VLAN != 0 && m.MAC == "" && m.Interface == "" && s.Network.Bond == nil {
		v.add(p+".interface", "is required with network.vlan when mac is not set")
	}
}

func validateLabels(v *validator, p string, l Labels) {
	for _, f := range []struct{ name, value string }{
		{"site", l.Site}, {"room", l.Room}, {"assetTag", l.AssetTag},
	} {
		if f.value == "" {
			continue
		}

		if err := labels.ValidateLabelValue(f.value); err != nil {
			v.add(p+"."+f.name, "%q is not a Kubernetes label value (at most 63 of A-Z a-z 0-9 - _ ., starting and ending alphanumeric)", f.value)
		}
	}
}

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }

func equalFoldMAC(a, b string) bool {
	ha, err1 := net.ParseMAC(a)
	hb, err2 := net.ParseMAC(b)

	if err1 != nil || err2 != nil {
		return strings.EqualFold(a, b)
	}

	return ha.String() == hb.String()
}
