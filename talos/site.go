// Package talos turns an Onramp site (one Talos cluster at one customer location) into
// Talos Linux machine configurations, using Sidero Labs' machinery library
// (github.com/siderolabs/talos/pkg/machinery, v1.14) rather than string templates.
//
// A Site is the typed model the technician edits in the UI or imports from YAML. Validate
// reports every problem with its field path before anything touches a node. A Generator
// wraps machinery's generate.NewInput the way talosctl does, then edits the typed
// documents machinery produced and adds Onramp's own:
//
//   - UnattendedInstallConfig with the SecureBoot installer image and a CEL disk selector
//     (Talos 1.14 selects install disks with CEL over block.DiskSpec; see celenv.DiskLocator);
//   - VolumeConfig for STATE and EPHEMERAL: LUKS2 with a TPM 2.0 sealed key
//     (checkSecurebootStatusOnEnroll, PCR 7 unless the site chose "PCR 11 only", plus the
//     signed PCR 11 policy Talos always adds), EPHEMERAL locked to STATE, optional recovery slot;
//   - registry mirrors, EventSinkConfig and KmsgLogConfig pointing at Onramp during the visit,
//     SideroLinkConfig for an Omni handoff, hostname, resolver, NTP, link/VLAN/bond addressing
//     and Kubernetes node labels.
//
// Every configuration is validated with machinery's strict validator in a metal runtime mode
// (MetalMode) before it is returned. Secrets bundles live in memory only; MarshalSecrets and
// UnmarshalSecrets convert them to bytes for the encrypted store, never to a file.
package talos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Defaults applied by (*Site).ApplyDefaults.
const (
	// DefaultTalosVersion is the Talos release this generator targets.
	DefaultTalosVersion = "v1.14.1"
	// DefaultInstallerRepository is the Image Factory SecureBoot installer repository; the
	// schematic ID and the Talos version complete the reference.
	DefaultInstallerRepository = "factory.talos.dev/metal-installer-secureboot"
	// DefaultSchematic is the Image Factory ID of the empty schematic (no extensions, no extra args).
	DefaultSchematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
	// LabelPrefix prefixes the Kubernetes node labels Onramp sets.
	LabelPrefix = "onramp/"
)

// Role is a machine's role in the cluster.
type Role string

// Machine roles.
const (
	RoleControlPlane Role = "controlplane"
	RoleWorker       Role = "worker"
)

// PCRPolicy names which PCR values the TPM-sealed disk key is bound to.
type PCRPolicy string

// PCR policies.
const (
	// PCRPolicy7And11 binds the key to PCR 7 (SecureBoot state: PK/KEK/db/dbx) and to the
	// signed PCR 11 policy (the UKI measured by systemd-stub). The default.
	PCRPolicy7And11 PCRPolicy = "7+11"
	// PCRPolicy11Only binds the key only to the signed PCR 11 policy.
	PCRPolicy11Only PCRPolicy = "11"
)

// PCR11OnlyExplanation is shown next to the "PCR 11 only" option.
const PCR11OnlyExplanation = "PCR 7 measures the SecureBoot variables (PK, KEK, db, dbx). A firmware " +
	"or dbx (revocation list) update changes PCR 7, and a key sealed to PCR 7 then no longer " +
	"unseals: the node cannot unlock STATE and EPHEMERAL until they are re-enrolled with a " +
	"recovery key. \"PCR 11 only\" trusts the signed UKI policy alone, so such updates do not " +
	"lock the node out, at the price of not detecting a changed SecureBoot configuration. " +
	"checkSecurebootStatusOnEnroll still refuses to enroll the key unless SecureBoot is on."

// RecoveryType is the kind of second (recovery) key slot on the encrypted volumes.
type RecoveryType string

// Recovery key kinds.
const (
	RecoveryNone RecoveryType = ""
	// RecoveryStatic is a static passphrase that the site keeps offline (printed, in a safe).
	RecoveryStatic RecoveryType = "static"
	// RecoveryKMS is a network KMS endpoint (Talos KMS protocol).
	RecoveryKMS RecoveryType = "kms"
)

// HandoffTarget is where the cluster goes after the visit.
type HandoffTarget string

// Handoff targets.
const (
	HandoffNone   HandoffTarget = ""
	HandoffOmni   HandoffTarget = "omni"
	HandoffBundle HandoffTarget = "bundle"
)

// AddressingMode is how a machine gets its address.
type AddressingMode string

// Addressing modes.
const (
	AddressingDHCP   AddressingMode = "dhcp"
	AddressingStatic AddressingMode = "static"
)

// Site is one cluster at one location: everything needed to generate every node's config.
type Site struct {
	// Name is the site's display name (e.g. "St. Mary lab 2").
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Cluster is the Kubernetes/Talos cluster name.
	Cluster string `yaml:"cluster" json:"cluster"`
	// TalosVersion defaults to DefaultTalosVersion; only v1.14.x is supported.
	TalosVersion string `yaml:"talosVersion,omitempty" json:"talosVersion,omitempty"`
	// KubernetesVersion defaults to machinery's constants.DefaultKubernetesVersion.
	KubernetesVersion string `yaml:"kubernetesVersion,omitempty" json:"kubernetesVersion,omitempty"`
	// Endpoint is the Kubernetes API endpoint, https://host:6443 (a VIP or the first
	// control-plane node).
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Installer is the installer image reference. It defaults to the Image Factory SecureBoot
	// installer for Schematic and TalosVersion; offline, point it at Onramp's registry mirror.
	Installer string `yaml:"installer,omitempty" json:"installer,omitempty"`
	// Schematic is the Image Factory schematic ID used for the default installer reference.
	Schematic string `yaml:"schematic,omitempty" json:"schematic,omitempty"`
	// InstallDisk is the default install disk selector for machines that set none.
	InstallDisk *DiskSelector `yaml:"installDisk,omitempty" json:"installDisk,omitempty"`

	Network         Network          `yaml:"network,omitempty" json:"network"`
	RegistryMirrors []RegistryMirror `yaml:"registryMirrors,omitempty" json:"registryMirrors,omitempty"`
	Encryption      Encryption       `yaml:"encryption,omitempty" json:"encryption"`
	Handoff         Handoff          `yaml:"handoff,omitempty" json:"handoff"`
	Events          Events           `yaml:"events,omitempty" json:"events"`
	// SecureBoot holds what every node must report after install: the signing keys of
	// the site's SecureBoot image. Empty fields are allowed here but block installs.
	SecureBoot SecureBootExpect `yaml:"secureBoot,omitempty" json:"secureBoot,omitempty"`
	Machines   []Machine        `yaml:"machines,omitempty" json:"machines"`
}

// SecureBootExpect is the site image's expected signing-key fingerprints, as Talos
// reports them in SecurityState (SHA-256 of the signing certificate's public key, 64
// lower-case hex digits).
type SecureBootExpect struct {
	// UKISigningKeyFingerprint is the key that signed the UKI (the db key's cert).
	UKISigningKeyFingerprint string `yaml:"ukiSigningKeyFingerprint,omitempty" json:"ukiSigningKeyFingerprint,omitempty"` // 64 hex
	// PCRSigningKeyFingerprint is the key that signed the UKI's PCR 11 policy.
	PCRSigningKeyFingerprint string `yaml:"pcrSigningKeyFingerprint,omitempty" json:"pcrSigningKeyFingerprint,omitempty"` // 64 hex
}

// IsZero reports whether no fingerprint is set.
func (e SecureBootExpect) IsZero() bool {
	return e.UKISigningKeyFingerprint == "" && e.PCRSigningKeyFingerprint == ""
}

// Complete reports whether both fingerprints are set.
func (e SecureBootExpect) Complete() bool {
	return e.UKISigningKeyFingerprint != "" && e.PCRSigningKeyFingerprint != ""
}

// Network holds the site-wide network defaults.
type Network struct {
	// Nameservers are DNS server IP addresses.
	Nameservers []string `yaml:"nameservers,omitempty" json:"nameservers,omitempty"`
	// NTPServers are NTP server host names or addresses.
	NTPServers []string `yaml:"ntpServers,omitempty" json:"ntpServers,omitempty"`
	// VLAN, when non-zero, puts the node's address on this 802.1Q VLAN of its primary link.
	VLAN uint16 `yaml:"vlan,omitempty" json:"vlan,omitempty"`
	// Bond, when set, bonds the listed links into bond0, which becomes the primary link.
	Bond *Bond `yaml:"bond,omitempty" json:"bond,omitempty"`
}

// Bond describes a link aggregate.
type Bond struct {
	// Mode is a Linux bonding mode name: balance-rr, active-backup, balance-xor, broadcast,
	// 802.3ad, balance-tlb, balance-alb.
	Mode string `yaml:"mode" json:"mode"`
	// Links are member link names or Talos link aliases (e.g. enp1s0f0, enp1s0f1).
	Links []string `yaml:"links" json:"links"`
}

// RegistryMirror redirects pulls from Registry to Endpoints (e.g. Onramp's own mirror).
type RegistryMirror struct {
	Registry  string   `yaml:"registry" json:"registry"`
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
}

// Encryption is the disk encryption policy for STATE and EPHEMERAL.
type Encryption struct {
	// PCRs is "7+11" (default) or "11"; see PCR11OnlyExplanation.
	PCRs PCRPolicy `yaml:"pcrs,omitempty" json:"pcrs,omitempty"`
	// Recovery configures the optional second key slot (slot 1).
	Recovery Recovery `yaml:"recovery,omitempty" json:"recovery"`
}

// Recovery is the optional recovery key slot. A static passphrase is a secret: it is not
// part of the site file and is given to the Generator with WithRecoveryPassphrase.
type Recovery struct {
	Type RecoveryType `yaml:"type,omitempty" json:"type,omitempty"`
	// KMSEndpoint is the KMS server URL when Type is "kms".
	KMSEndpoint string `yaml:"kmsEndpoint,omitempty" json:"kmsEndpoint,omitempty"`
}

// Handoff is where the cluster is handed after the visit.
type Handoff struct {
	Target HandoffTarget `yaml:"target,omitempty" json:"target,omitempty"`
	Omni   *Omni         `yaml:"omni,omitempty" json:"omni,omitempty"`
}

// Omni is a Sidero Omni instance the nodes join over SideroLink.
type Omni struct {
	// APIURL is Omni's SideroLink API URL (https://omni.example:8090).
	APIURL string `yaml:"apiUrl" json:"apiUrl"`
	// JoinToken is the Omni join token; it is added as the jointoken query parameter.
	JoinToken string `yaml:"joinToken" json:"joinToken"`
}

// Events are Onramp's receivers during the visit.
type Events struct {
	// Sink is the Talos event sink, host:port (gRPC, siderolink events API).
	Sink string `yaml:"sink,omitempty" json:"sink,omitempty"`
	// Kmsg is the kernel log receiver, tcp://host:port or udp://host:port.
	Kmsg string `yaml:"kmsg,omitempty" json:"kmsg,omitempty"`
}

// Machine is one server, identified by MAC and/or SMBIOS UUID.
type Machine struct {
	MAC         string        `yaml:"mac,omitempty" json:"mac,omitempty"`
	UUID        string        `yaml:"uuid,omitempty" json:"uuid,omitempty"`
	Role        Role          `yaml:"role" json:"role"`
	Hostname    string        `yaml:"hostname" json:"hostname"`
	InstallDisk *DiskSelector `yaml:"installDisk,omitempty" json:"installDisk,omitempty"`
	// Interface is the primary link name, needed for static addressing when MAC is unknown.
	Interface  string     `yaml:"interface,omitempty" json:"interface,omitempty"`
	Addressing Addressing `yaml:"addressing,omitempty" json:"addressing"`
	Labels     Labels     `yaml:"labels,omitempty" json:"labels"`
}

// Addressing is DHCP (default) or a static address with a default gateway.
type Addressing struct {
	Mode AddressingMode `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Address is an IP prefix in CIDR form (10.77.0.11/24) when Mode is static.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Gateway is the default gateway when Mode is static.
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
}

// Labels become Kubernetes node labels under LabelPrefix.
type Labels struct {
	Site     string `yaml:"site,omitempty" json:"site,omitempty"`
	Room     string `yaml:"room,omitempty" json:"room,omitempty"`
	AssetTag string `yaml:"assetTag,omitempty" json:"assetTag,omitempty"`
}

// DiskSelector picks the install disk; all set fields must match. Sizes take a unit:
// "480GB", "1TB", "512GiB" (decimal kB/MB/GB/TB, binary KiB/MiB/GiB/TiB).
type DiskSelector struct {
	Serial  string `yaml:"serial,omitempty" json:"serial,omitempty"`
	WWID    string `yaml:"wwid,omitempty" json:"wwid,omitempty"`
	Model   string `yaml:"model,omitempty" json:"model,omitempty"`
	DevPath string `yaml:"devPath,omitempty" json:"devPath,omitempty"`
	MinSize string `yaml:"minSize,omitempty" json:"minSize,omitempty"`
	MaxSize string `yaml:"maxSize,omitempty" json:"maxSize,omitempty"`
}

// LoadSite reads and parses a site YAML file. It does not validate it.
func LoadSite(path string) (*Site, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read site %s: %w", path, err)
	}

	site, err := ParseSite(data)
	if err != nil {
		return nil, fmt.Errorf("parse site %s: %w", path, err)
	}

	return site, nil
}

// yamlLineRe finds "line N" in yaml errors.
var yamlLineRe = regexp.MustCompile(`line (\d+)`)

// ParseError is a site YAML syntax or type error; Line is 0 when yaml gave none.
type ParseError struct {
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	msg := e.Err.Error()
	if e.Line > 0 && !yamlLineRe.MatchString(msg) {
		return fmt.Sprintf("line %d: %s", e.Line, msg)
	}

	return msg
}

func (e *ParseError) Unwrap() error { return e.Err }

// ParseSite parses a site from YAML. Unknown fields are errors. It does not validate it.
func ParseSite(data []byte) (*Site, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)

	var site Site

	if err := dec.Decode(&site); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ParseError{Err: errors.New("empty site document")}
		}

		pe := &ParseError{Err: err}
		if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
			pe.Line, _ = strconv.Atoi(m[1]) //nolint:errcheck // the regexp matched digits
		}

		return nil, pe
	}

	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &ParseError{Err: errors.New("a site file holds exactly one YAML document")}
	}

	site.normalize()

	return &site, nil
}

// normalize treats an empty selector like an absent one ("installDisk: {}" selects nothing).
func (s *Site) normalize() {
	if s.InstallDisk != nil && s.InstallDisk.IsZero() {
		s.InstallDisk = nil
	}

	for i := range s.Machines {
		if d := s.Machines[i].InstallDisk; d != nil && d.IsZero() {
			s.Machines[i].InstallDisk = nil
		}
	}
}

// Marshal renders the site as YAML.
func (s *Site) Marshal() ([]byte, error) {
	return yaml.Marshal(s)
}

// ApplyDefaults fills the defaulted fields in place.
func (s *Site) ApplyDefaults() {
	if s.TalosVersion == "" {
		s.TalosVersion = DefaultTalosVersion
	}

	if s.KubernetesVersion == "" {
		s.KubernetesVersion = defaultKubernetesVersion
	}

	if s.Schematic == "" {
		s.Schematic = DefaultSchematic
	}

	if s.Installer == "" {
		s.Installer = fmt.Sprintf("%s/%s:%s", DefaultInstallerRepository, s.Schematic, s.TalosVersion)
	}

	if s.Encryption.PCRs == "" {
		s.Encryption.PCRs = PCRPolicy7And11
	}

	for i := range s.Machines {
		if s.Machines[i].Addressing.Mode == "" {
			s.Machines[i].Addressing.Mode = AddressingDHCP
		}
	}
}

// Machine finds a machine by MAC address or UUID (case-insensitive).
func (s *Site) Machine(macOrUUID string) (Machine, bool) {
	for _, m := range s.Machines {
		if (m.MAC != "" && equalFoldMAC(m.MAC, macOrUUID)) || (m.UUID != "" && equalFold(m.UUID, macOrUUID)) {
			return m, true
		}
	}

	return Machine{}, false
}

// Key is the machine's identity: its MAC if known, else its UUID.
func (m Machine) Key() string {
	if m.MAC != "" {
		return m.MAC
	}

	return m.UUID
}
