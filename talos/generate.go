package talos

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/cel"
	"github.com/siderolabs/talos/pkg/machinery/cel/celenv"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/block"
	"github.com/siderolabs/talos/pkg/machinery/config/types/k8s"
	"github.com/siderolabs/talos/pkg/machinery/config/types/meta"
	"github.com/siderolabs/talos/pkg/machinery/config/types/network"
	"github.com/siderolabs/talos/pkg/machinery/config/types/runtime"
	"github.com/siderolabs/talos/pkg/machinery/config/types/siderolink"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	blockres "github.com/siderolabs/talos/pkg/machinery/resources/block"
)

// defaultKubernetesVersion is machinery's default Kubernetes for Talos 1.14.
const defaultKubernetesVersion = constants.DefaultKubernetesVersion

// Names of the documents and links Onramp adds.
const (
	// KmsgLogName names the KmsgLogConfig document pointing at Onramp.
	KmsgLogName = "onramp"
	// PrimaryLinkAlias is the LinkAliasConfig name given to the link with the machine's MAC.
	PrimaryLinkAlias = "net0"
	// BondLinkName is the bond Onramp creates from network.bond.
	BondLinkName = "bond0"
	// MinRecoveryPassphraseLen is the shortest accepted static recovery passphrase.
	MinRecoveryPassphraseLen = 20
)

// Node label keys.
const (
	LabelSite     = LabelPrefix + "site"
	LabelRoom     = LabelPrefix + "room"
	LabelAssetTag = LabelPrefix + "asset-tag"
)

// Generator builds validated Talos machine configurations for one site.
type Generator struct {
	site           *Site
	contract       *coreconfig.VersionContract
	bundle         *secrets.Bundle
	clock          secrets.Clock
	recovery       string
	talosEndpoints []string
}

// Option configures a Generator.
type Option func(*Generator) error

// WithSecrets uses an existing secrets bundle instead of generating one.
func WithSecrets(bundle *secrets.Bundle) Option {
	return func(g *Generator) error {
		if bundle == nil {
			return errors.New("nil secrets bundle")
		}

		g.bundle = bundle

		return nil
	}
}

// WithClock sets the clock used for new secrets and certificates (secrets.NewFixedClock in tests).
func WithClock(clock secrets.Clock) Option {
	return func(g *Generator) error {
		if clock == nil {
			return errors.New("nil clock")
		}

		g.clock = clock

		return nil
	}
}

// WithRecoveryPassphrase gives the static recovery passphrase (key slot 1) required when
// the site's encryption.recovery.type is "static". It is a secret like the bundle.
func WithRecoveryPassphrase(passphrase string) Option {
	return func(g *Generator) error {
		if len(passphrase) < MinRecoveryPassphraseLen {
			return fmt.Errorf("recovery passphrase is shorter than %d characters", MinRecoveryPassphraseLen)
		}

		g.recovery = passphrase

		return nil
	}
}

// WithTalosEndpoints sets the Talos API endpoints written to talosconfig (default: the
// static addresses of the control-plane machines, else the Kubernetes endpoint's host).
func WithTalosEndpoints(endpoints ...string) Option {
	return func(g *Generator) error {
		g.talosEndpoints = slices.Clone(endpoints)

		return nil
	}
}

// NewGenerator validates the site and prepares generation. Without WithSecrets it
// generates a new secrets bundle (about a second: an RSA service-account key).
func NewGenerator(site *Site, opts ...Option) (*Generator, error) {
	if site == nil {
		return nil, errors.New("new generator: nil site")
	}

	if err := site.Validate(); err != nil {
		return nil, err
	}

	g := &Generator{site: site.withDefaults()}

	for _, opt := range opts {
		if err := opt(g); err != nil {
			return nil, fmt.Errorf("new generator: %w", err)
		}
	}

	contract, err := coreconfig.ParseContractFromVersion(g.site.TalosVersion)
	if err != nil {
		return nil, fmt.Errorf("new generator: %w", err)
	}

	g.contract = contract

	if g.clock == nil {
		g.clock = secrets.NewClock()
	}

	if g.bundle == nil {
		if g.bundle, err = NewSecrets(g.clock); err != nil {
			return nil, fmt.Errorf("new generator: %w", err)
		}
	} else if g.bundle.Clock == nil {
		g.bundle.Clock = g.clock
	}

	switch g.site.Encryption.Recovery.Type {
	case RecoveryStatic:
		if g.recovery == "" {
			return nil, errors.New("new generator: encryption.recovery.type is static: pass the passphrase with WithRecoveryPassphrase")
		}
	default:
		if g.recovery != "" {
			return nil, errors.New("new generator: a recovery passphrase was given but encryption.recovery.type is not static")
		}
	}

	if len(g.talosEndpoints) == 0 {
		g.talosEndpoints = defaultTalosEndpoints(g.site)
	}

	return g, nil
}

// Site returns a copy of the generator's (defaulted) site.
func (g *Generator) Site() *Site { return g.site.withDefaults() }

// Secrets returns the generator's secrets bundle. Treat it as key material.
func (g *Generator) Secrets() *secrets.Bundle { return g.bundle }

// TalosEndpoints returns the endpoints written to talosconfig.
func (g *Generator) TalosEndpoints() []string { return slices.Clone(g.talosEndpoints) }

func defaultTalosEndpoints(s *Site) []string {
	var eps []string

	for _, m := range s.Machines {
		if m.Role != RoleControlPlane || m.Addressing.Mode != AddressingStatic {
			continue
		}

		if p, err := netip.ParsePrefix(m.Addressing.Address); err == nil {
			eps = append(eps, p.Addr().String())
		}
	}

	if len(eps) == 0 {
		if u, err := url.Parse(s.Endpoint); err == nil && u.Hostname() != "" {
			eps = append(eps, u.Hostname())
		}
	}

	return eps
}

// NodeConfig returns the validated machine configuration (YAML, multi-document) of one
// machine of the site. It carries the cluster's keys: send it only over TLS.
func (g *Generator) NodeConfig(m Machine) ([]byte, error) {
	cfg, err := g.NodeProvider(m)
	if err != nil {
		return nil, err
	}

	return encode(cfg, m.Key())
}

// NodeProvider is NodeConfig before encoding, for callers that inspect documents.
func (g *Generator) NodeProvider(m Machine) (coreconfig.Provider, error) {
	if m.Addressing.Mode == "" {
		m.Addressing.Mode = AddressingDHCP
	}

	probe := g.site.withDefaults()
	probe.Machines = []Machine{m}

	v := &validator{}
	probe.validateMachines(v, false)

	if len(v.ps) > 0 {
		return nil, fmt.Errorf("generate config for %s: %w", m.Key(), &ValidationError{Problems: v.ps})
	}

	cfg, err := g.build(m.Role, &m)
	if err != nil {
		return nil, fmt.Errorf("generate config for %s: %w", m.Key(), err)
	}

	return cfg, nil
}

// RoleConfig returns a generic validated configuration for a role with no per-machine
// settings (the `talos gen` export): the site's installDisk selector is required.
func (g *Generator) RoleConfig(role Role) ([]byte, error) {
	if role != RoleControlPlane && role != RoleWorker {
		return nil, fmt.Errorf("generate %s config: unknown role", role)
	}

	if g.site.InstallDisk == nil {
		return nil, fmt.Errorf("generate %s config: the site has no installDisk selector", role)
	}

	cfg, err := g.build(role, nil)
	if err != nil {
		return nil, fmt.Errorf("generate %s config: %w", role, err)
	}

	return encode(cfg, string(role))
}

// Talosconfig returns a talosconfig (client certificate with the os:admin role, the
// Talos CA, the endpoints) for the site. It is key material like the bundle.
func (g *Generator) Talosconfig() ([]byte, error) {
	in, err := g.input()
	if err != nil {
		return nil, fmt.Errorf("generate talosconfig: %w", err)
	}

	tc, err := in.Talosconfig()
	if err != nil {
		return nil, fmt.Errorf("generate talosconfig: %w", err)
	}

	data, err := tc.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode talosconfig: %w", err)
	}

	return data, nil
}

func encode(cfg coreconfig.Provider, what string) ([]byte, error) {
	data, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return nil, fmt.Errorf("encode config for %s: %w", what, err)
	}

	return data, nil
}

func (g *Generator) input() (*generate.Input, error) {
	opts := []generate.Option{
		generate.WithVersionContract(g.contract),
		generate.WithSecretsBundle(g.bundle),
		generate.WithEndpointList(g.talosEndpoints),
		generate.WithInstallImage(g.site.Installer),
		// Onramp writes its own UnattendedInstallConfig with a CEL disk selector.
		generate.WithSkipUnattendedInstallConfig(true),
	}

	for _, m := range g.site.RegistryMirrors {
		opts = append(opts, generate.WithRegistryMirror(m.Registry, m.Endpoints...))
	}

	return generate.NewInput(g.site.Cluster, g.site.Endpoint, g.site.KubernetesVersion, opts...)
}

// build generates the documents for role (and machine m, if not nil), validates them in
// MetalMode with strict checks, and returns the container.
func (g *Generator) build(role Role, m *Machine) (coreconfig.Provider, error) {
	in, err := g.input()
	if err != nil {
		return nil, err
	}

	t := machine.TypeWorker
	if role == RoleControlPlane {
		t = machine.TypeControlPlane
	}

	base, err := in.Config(t)
	if err != nil {
		return nil, fmt.Errorf("generate base documents: %w", err)
	}

	docs, err := g.edit(base.Documents(), m)
	if err != nil {
		return nil, err
	}

	cfg, err := container.New(docs...)
	if err != nil {
		return nil, fmt.Errorf("assemble documents: %w", err)
	}

	if err := Validate(cfg); err != nil {
		return nil, err
	}

	return cfg, nil
}

// Validate runs machinery's strict validation for a metal node. Warnings are errors too:
// a config Onramp serves must be clean.
func Validate(cfg coreconfig.Provider) error {
	warnings, err := cfg.ValidateAsClient(MetalMode{}, validation.WithStrict())
	if err != nil {
		return fmt.Errorf("validate config (metal, strict): %w", err)
	}

	if len(warnings) > 0 {
		return fmt.Errorf("validate config (metal, strict): warnings: %s", strings.Join(warnings, "; "))
	}

	return nil
}

// edit rewrites machinery's documents for the site and appends Onramp's.
//
//nolint:gocyclo,cyclop
func (g *Generator) edit(in []config.Document, m *Machine) ([]config.Document, error) {
	s := g.site
	docs := make([]config.Document, 0, len(in)+10)

	var haveEphemeral, haveResolver bool

	for _, d := range in {
		d = d.Clone()

		switch doc := d.(type) {
		case *block.VolumeConfigV1Alpha1:
			if doc.MetaName == constants.EphemeralPartitionLabel {
				doc.EncryptionSpec = g.encryption(true)
				haveEphemeral = true
			}
		case *network.HostnameConfigV1Alpha1:
			if m != nil {
				doc.ConfigAuto = nil
				doc.ConfigHostname = m.Hostname
			}
		case *network.ResolverConfigV1Alpha1:
			doc.ResolverNameservers = nameservers(s.Network.Nameservers)
			haveResolver = true
		case *k8s.KubeNodeConfigV1Alpha1:
			if m != nil {
				doc.LabelsConfig = nodeLabels(doc.LabelsConfig, m.Labels)
			}
		}

		docs = append(docs, d)
	}

	state := block.NewVolumeConfigV1Alpha1()
	state.MetaName = constants.StatePartitionLabel
	state.EncryptionSpec = g.encryption(false)
	docs = append(docs, state)

	if !haveEphemeral {
		eph := block.NewVolumeConfigV1Alpha1()
		eph.MetaName = constants.EphemeralPartitionLabel
		eph.EncryptionSpec = g.encryption(true)
		docs = append(docs, eph)
	}

	if !haveResolver && len(s.Network.Nameservers) > 0 {
		r := network.NewResolverConfigV1Alpha1()
		r.ResolverNameservers = nameservers(s.Network.Nameservers)
		docs = append(docs, r)
	}

	if len(s.Network.NTPServers) > 0 {
		ts := network.NewTimeSyncConfigV1Alpha1()
		ts.TimeNTP = &network.NTPConfig{Servers: slices.Clone(s.Network.NTPServers)}
		docs = append(docs, ts)
	}

	selector := s.InstallDisk
	if m != nil && m.InstallDisk != nil {
		selector = m.InstallDisk
	}

	if selector == nil {
		return nil, errors.New("no install disk selector")
	}

	expr, err := selector.Compile()
	if err != nil {
		return nil, err
	}

	inst := runtime.NewUnattendedInstallConfigV1Alpha1()
	inst.Installer.Image = s.Installer
	inst.ProvisioningSpec.DiskSelector.Match = expr
	inst.ProvisioningSpec.Wipe = new(false)
	docs = append(docs, inst)

	if m != nil {
		linkDocs, err := g.linkDocuments(*m)
		if err != nil {
			return nil, err
		}

		docs = append(docs, linkDocs...)
	}

	if s.Events.Sink != "" {
		es := runtime.NewEventSinkV1Alpha1()
		es.Endpoint = s.Events.Sink
		docs = append(docs, es)
	}

	if s.Events.Kmsg != "" {
		u, err := url.Parse(s.Events.Kmsg)
		if err != nil {
			return nil, fmt.Errorf("parse events.kmsg: %w", err)
		}

		kl := runtime.NewKmsgLogV1Alpha1()
		kl.MetaName = KmsgLogName
		kl.KmsgLogURL = meta.URL{URL: u}
		docs = append(docs, kl)
	}

	if s.Handoff.Target == HandoffOmni && s.Handoff.Omni != nil {
		u, err := url.Parse(s.Handoff.Omni.APIURL)
		if err != nil {
			return nil, fmt.Errorf("parse handoff.omni.apiUrl: %w", err)
		}

		q := u.Query()
		q.Set("jointoken", s.Handoff.Omni.JoinToken)
		u.RawQuery = q.Encode()

		sl := siderolink.NewConfigV1Alpha1()
		sl.APIUrlConfig = meta.URL{URL: u}
		docs = append(docs, sl)
	}

	return docs, nil
}

// encryption is the LUKS2 spec for STATE (ephemeral=false) or EPHEMERAL.
func (g *Generator) encryption(ephemeral bool) block.EncryptionSpec {
	tpm := &block.EncryptionKeyTPM{TPMCheckSecurebootStatusOnEnroll: new(true)}

	// Talos always adds the signed PCR 11 policy (PubKeyPCRs). Options.PCRs lists the PCRs
	// bound by value: PCR 7 by default, none for "PCR 11 only".
	if g.site.Encryption.PCRs == PCRPolicy11Only {
		tpm.TPMOptions = &block.EncryptionKeyTPMOptions{PCRs: []int{}}
	} else {
		tpm.TPMOptions = &block.EncryptionKeyTPMOptions{PCRs: []int{constants.SecureBootStatePCR}}
	}

	key := block.EncryptionKey{KeySlot: 0, KeyTPM: tpm}
	if ephemeral {
		// EPHEMERAL only unlocks together with this node's STATE (its salt lives there).
		key.KeyLockToSTATE = new(true)
	}

	spec := block.EncryptionSpec{
		EncryptionProvider: blockres.EncryptionProviderLUKS2,
		EncryptionKeys:     []block.EncryptionKey{key},
	}

	switch g.site.Encryption.Recovery.Type {
	case RecoveryStatic:
		spec.EncryptionKeys = append(spec.EncryptionKeys, block.EncryptionKey{
			KeySlot:   1,
			KeyStatic: &block.EncryptionKeyStatic{KeyData: g.recovery},
		})
	case RecoveryKMS:
		spec.EncryptionKeys = append(spec.EncryptionKeys, block.EncryptionKey{
			KeySlot: 1,
			KeyKMS:  &block.EncryptionKeyKMS{KMSEndpoint: g.site.Encryption.Recovery.KMSEndpoint},
		})
	}

	return spec
}

func nameservers(addrs []string) []network.NameserverConfig {
	var out []network.NameserverConfig

	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, network.NameserverConfig{Address: meta.Addr{Addr: ip}})
		}
	}

	return out
}

func nodeLabels(base map[string]string, l Labels) map[string]string {
	out := map[string]string{}

	for k, v := range base {
		out[k] = v
	}

	for k, v := range map[string]string{LabelSite: l.Site, LabelRoom: l.Room, LabelAssetTag: l.AssetTag} {
		if v != "" {
			out[k] = v
		}
	}

	if len(out) == 0 {
		return nil
	}

	return out
}

// linkDocuments configures the machine's primary link. With DHCP on a plain link nothing
// is needed: Talos runs DHCP on every link while no link or DHCP document exists.
//
//nolint:gocyclo
func (g *Generator) linkDocuments(m Machine) ([]config.Document, error) {
	s := g.site
	static := m.Addressing.Mode == AddressingStatic

	if !static && s.Network.VLAN == 0 && s.Network.Bond == nil {
		return nil, nil
	}

	var docs []config.Document

	// The primary link: a bond, the link with the machine's MAC (by alias), or a name.
	var primary string

	switch {
	case s.Network.Bond != nil:
		primary = BondLinkName
	case m.MAC != "":
		hw, err := net.ParseMAC(m.MAC)
		if err != nil {
			return nil, fmt.Errorf("parse mac: %w", err)
		}

		expr, err := cel.ParseBooleanExpression(fmt.Sprintf("mac(link.permanent_addr) == %q", hw.String()), celenv.LinkLocator())
		if err != nil {
			return nil, fmt.Errorf("build link selector: %w", err)
		}

		alias := network.NewLinkAliasConfigV1Alpha1(PrimaryLinkAlias)
		alias.Selector.Match = expr
		docs = append(docs, alias)
		primary = PrimaryLinkAlias
	default:
		primary = m.Interface
	}

	common := network.CommonLinkConfig{LinkUp: new(true)}

	if static {
		prefix, err := netip.ParsePrefix(m.Addressing.Address)
		if err != nil {
			return nil, fmt.Errorf("parse address: %w", err)
		}

		common.LinkAddresses = []network.AddressConfig{{AddressAddress: prefix}}

		if m.Addressing.Gateway != "" {
			gw, err := netip.ParseAddr(m.Addressing.Gateway)
			if err != nil {
				return nil, fmt.Errorf("parse gateway: %w", err)
			}

			common.LinkRoutes = []network.RouteConfig{{RouteGateway: meta.Addr{Addr: gw}}}
		}
	}

	// target carries the address: the VLAN if any, else the primary link.
	target := primary
	targetCommon := common
	primaryCommon := network.CommonLinkConfig{LinkUp: new(true)}

	if s.Network.VLAN != 0 {
		target = fmt.Sprintf("%s.%d", primary, s.Network.VLAN)
	} else {
		primaryCommon = common
	}

	if s.Network.Bond != nil {
		mode, err := nethelpers.BondModeByName(s.Network.Bond.Mode)
		if err != nil {
			return nil, fmt.Errorf("parse bond mode: %w", err)
		}

		bond := network.NewBondConfigV1Alpha1(BondLinkName)
		bond.BondLinks = slices.Clone(s.Network.Bond.Links)
		bond.BondMode = &mode
		// Link monitoring every 100 ms, 200 ms grace up and down: the values Talos's own
		// validator asks for on 802.3ad and sensible for every mode.
		bond.BondMIIMon = new(uint32(100))
		bond.BondUpDelay = new(uint32(200))
		bond.BondDownDelay = new(uint32(200))
		bond.CommonLinkConfig = primaryCommon
		docs = append(docs, bond)
	} else {
		link := network.NewLinkConfigV1Alpha1(primary)
		link.CommonLinkConfig = primaryCommon
		docs = append(docs, link)
	}

	if s.Network.VLAN != 0 {
		vlan := network.NewVLANConfigV1Alpha1(target)
		vlan.VLANIDConfig = s.Network.VLAN
		vlan.ParentLinkConfig = primary
		vlan.CommonLinkConfig = targetCommon
		docs = append(docs, vlan)
	}

	if !static {
		docs = append(docs, network.NewDHCPv4ConfigV1Alpha1(target))
	}

	return docs, nil
}
