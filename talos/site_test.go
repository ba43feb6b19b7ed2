package talos

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	blockpb "github.com/siderolabs/talos/pkg/machinery/api/resource/definitions/block"
	"github.com/siderolabs/talos/pkg/machinery/cel"
	"github.com/siderolabs/talos/pkg/machinery/cel/celenv"
	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// minimalSite is valid; each case below breaks it in one or more places.
const minimalSite = `
cluster: lab
endpoint: https://10.77.0.10:6443
machines:
  - mac: 52:54:00:00:00:01
    role: controlplane
    hostname: cp-1
    installDisk: {serial: S1}
`

func TestSiteDefaults(t *testing.T) {
	t.Parallel()

	site, err := ParseSite([]byte(minimalSite))
	if err != nil {
		t.Fatal(err)
	}

	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}

	if site.TalosVersion != "" {
		t.Error("Validate changed the site")
	}

	d := site.withDefaults()

	want := Site{
		Cluster:           "lab",
		Endpoint:          "https://10.77.0.10:6443",
		TalosVersion:      "v1.14.1",
		KubernetesVersion: constants.DefaultKubernetesVersion,
		Schematic:         DefaultSchematic,
		Installer:         "factory.talos.dev/metal-installer-secureboot/" + DefaultSchematic + ":v1.14.1",
		Encryption:        Encryption{PCRs: PCRPolicy7And11},
		Machines: []Machine{{
			MAC: "52:54:00:00:00:01", Role: RoleControlPlane, Hostname: "cp-1",
			InstallDisk: &DiskSelector{Serial: "S1"}, Addressing: Addressing{Mode: AddressingDHCP},
		}},
	}

	if diff := cmp.Diff(&want, d); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}

	if m, ok := site.Machine("52-54-00-00-00-01"); !ok || m.Hostname != "cp-1" {
		t.Errorf("Machine by MAC in another notation = %v, %v", m, ok)
	}
}

func TestSiteValidation(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		yaml string
		want []Problem
	}{
		{
			name: "empty",
			yaml: `name: x`,
			want: []Problem{
				{"cluster", "is required"},
				{"endpoint", "is required (https://VIP-or-first-node:6443)"},
			},
		},
		{
			name: "secureBoot fingerprints",
			yaml: `
cluster: lab
endpoint: https://10.77.0.10:6443
secureBoot:
  ukiSigningKeyFingerprint: 282E8130B7070F107AAECC25D3992CA4440270860B09088792A5075FAB0D13F8
  pcrSigningKeyFingerprint: "67:55"
`,
			want: []Problem{
				{"secureBoot.ukiSigningKeyFingerprint", `"282E8130B7070F107AAECC25D3992CA4440270860B09088792A5075FAB0D13F8" is not a SHA-256 fingerprint (64 lower-case hex digits)`},
				{"secureBoot.pcrSigningKeyFingerprint", `"67:55" is not a SHA-256 fingerprint (64 lower-case hex digits)`},
			},
		},
		{
			name: "cluster level",
			yaml: `
cluster: Lab_1
talosVersion: v1.13.2
kubernetesVersion: v1.35.0
endpoint: http://10.0.0.1
schematic: abc
installer: "bad image"
installDisk: {minSize: 2TB, maxSize: 1TB}
`,
			want: []Problem{
				{"cluster", `"Lab_1" must be lower-case letters, digits and '-', at most 63 characters`},
				{"talosVersion", "v1.13.2 is not supported: this generator builds Talos v1.14 documents"},
				{"kubernetesVersion", `"v1.35.0" is not a version like ` + constants.DefaultKubernetesVersion + " (no leading v)"},
				{"endpoint", `"http://10.0.0.1" must look like https://host:6443`},
				{"schematic", `"abc" is not an Image Factory schematic ID (64 hex digits)`},
				{"installer", `"bad image" is not an image reference like factory.talos.dev/metal-installer-secureboot/<schematic>:v1.13.2`},
				{"installDisk.minSize", "2TB is larger than maxSize 1TB"},
			},
		},
		{
			name: "network, registries, encryption, handoff, events",
			yaml: `
cluster: lab
endpoint: https://10.77.0.10:6443
network:
  nameservers: [10.77.0.1, dns.example]
  ntpServers: ["", pool.ntp.org]
  vlan: 5000
  bond: {mode: lacp, links: []}
registryMirrors:
  - registry: docker.io
    endpoints: [ftp://mirror]
  - registry: docker.io
    endpoints: []
encryption:
  pcrs: "7"
  recovery: {type: tang}
handoff:
  target: omni
  omni: {apiUrl: "https://omni.example/path?jointoken=x"}
events:
  sink: 10.77.0.1
  kmsg: http://10.77.0.1:8091
`,
			want: []Problem{
				{"network.nameservers[1]", `"dns.example" is not an IP address`},
				{"network.ntpServers[0]", `"" is not a host name or address`},
				{"network.vlan", "5000 is out of range (1-4094)"},
				{"network.bond.mode", `"lacp" is not a bonding mode (balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb)`},
				{"network.bond.links", "at least one member link is required"},
				{"registryMirrors[0].endpoints[0]", `"ftp://mirror" is not an http(s) URL`},
				{"registryMirrors[1].registry", `"docker.io" is already mirrored by registryMirrors[0]`},
				{"registryMirrors[1].endpoints", "at least one endpoint is required"},
				{"encryption.pcrs", `"7" is not a PCR policy ("7+11" or "11")`},
				{"encryption.recovery.type", `"tang" is not a recovery key type ("static" or "kms")`},
				{"handoff.omni.apiUrl", `"https://omni.example/path?jointoken=x" must be an https:// or grpc:// URL without a path`},
				{"handoff.omni.joinToken", "is required"},
				{"events.sink", `"10.77.0.1" must be host:port`},
				{"events.kmsg", `"http://10.77.0.1:8091" must be tcp://host:port or udp://host:port`},
			},
		},
		{
			name: "machines",
			yaml: `
cluster: lab
endpoint: https://10.77.0.10:6443
machines:
  - role: worker
    hostname: w-1
    installDisk: {serial: S1}
  - mac: 52:54:00:00:00:02
    uuid: not-a-uuid
    role: master
    hostname: W_2
    installDisk: {}
  - mac: 52:54:00:00:00:03
    role: worker
    hostname: w-3
    installDisk: {serial: " S3", minSize: 10 apples}
    addressing: {mode: static, address: 10.77.0.0/24, gateway: 10.88.0.1}
    labels: {room: "room 4", assetTag: "-AT1"}
  - mac: 52:54:00:00:00:03
    role: worker
    hostname: w-3
    addressing: {mode: bootp}
  - uuid: 4c4c4544-0042-3510-8051-b4c04f4a4a31
    role: worker
    hostname: w-5
    installDisk: {devPath: sda}
    addressing: {mode: static, address: 10.77.0.15/24, gateway: 10.77.0.15}
`,
			want: []Problem{
				{"machines[0]", "set mac or uuid to identify the machine"},
				{"machines[1].uuid", `"not-a-uuid" is not a UUID`},
				{"machines[1].role", `"master" is not a role (controlplane or worker)`},
				{"machines[1].hostname", `"W_2" must be one lower-case DNS label (letters, digits, '-')`},
				{"machines[1].installDisk", "is required (or set the site's installDisk)"},
				{"machines[2].installDisk.serial", `" S3" has leading or trailing spaces; Talos compares exactly`},
				{"machines[2].installDisk.minSize", `size "10 apples": want a number with a unit, e.g. 480GB, 1TB, 512GiB`},
				{"machines[2].addressing.address", "10.77.0.0/24 is a network address, not a host address"},
				{"machines[2].addressing.gateway", "10.88.0.1 is not inside 10.77.0.0/24"},
				{"machines[2].labels.room", `"room 4" is not a Kubernetes label value (at most 63 of A-Z a-z 0-9 - _ ., starting and ending alphanumeric)`},
				{"machines[2].labels.assetTag", `"-AT1" is not a Kubernetes label value (at most 63 of A-Z a-z 0-9 - _ ., starting and ending alphanumeric)`},
				{"machines[3].mac", "52:54:00:00:00:03 is also machines[2]"},
				{"machines[3].hostname", `"w-3" is also machines[2]`},
				{"machines[3].installDisk", "is required (or set the site's installDisk)"},
				{"machines[3].addressing.mode", `"bootp" is not an addressing mode (dhcp or static)`},
				{"machines[4].installDisk.devPath", `"sda" is not a /dev/ path`},
				{"machines[4].addressing.gateway", "10.77.0.15 is the machine's own address"},
				{"machines[4].interface", "is required for static addressing when mac is not set"},
				{"machines", "at least one machine must have role controlplane"},
			},
		},
		{
			name: "kms recovery needs https endpoint; omni only with target omni",
			yaml: `
cluster: lab
endpoint: https://10.77.0.10:6443
encryption:
  recovery: {type: kms, kmsEndpoint: "10.0.0.1:4443"}
handoff:
  target: bundle
  omni: {apiUrl: https://omni.example, joinToken: t}
`,
			want: []Problem{
				{"encryption.recovery.kmsEndpoint", `"10.0.0.1:4443" is not an https URL`},
				{"handoff.omni", `is only used with target "omni"`},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			site, err := ParseSite([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}

			err = site.Validate()

			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate = %v, want *ValidationError", err)
			}

			if diff := cmp.Diff(tc.want, verr.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}

			if _, err := NewGenerator(site); !errors.As(err, &verr) {
				t.Errorf("NewGenerator accepted an invalid site: %v", err)
			}
		})
	}
}

func TestParseSiteErrors(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name     string
		yaml     string
		wantLine int
		wantMsg  string
	}{
		{"unknown field", "cluster: lab\nendpoint: https://x:6443\nmachines:\n  - mac: a\n    rol: worker\n", 5, "field rol not found"},
		{"wrong type", "cluster: lab\nnetwork:\n  vlan: ten\n", 3, "cannot unmarshal"},
		{"syntax", "cluster: lab\nmachines: [\n", 2, "did not find expected node content"},
		{"empty", "", 0, "empty site document"},
		{"two documents", "cluster: a\n---\ncluster: b\n", 0, "exactly one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			_, err := ParseSite([]byte(tc.yaml))

			var perr *ParseError
			if !errors.As(err, &perr) {
				t.Fatalf("ParseSite = %v, want *ParseError", err)
			}

			if perr.Line != tc.wantLine || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("ParseSite = line %d %q, want line %d containing %q", perr.Line, err, tc.wantLine, tc.wantMsg)
			}
		})
	}
}

func TestSiteYAMLRoundTrip(t *testing.T) {
	t.Parallel()

	site := loadTestSite(t)

	data, err := site.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	back, err := ParseSite(data)
	if err != nil {
		t.Fatal(err)
	}

	if diff := cmp.Diff(site, back); diff != "" {
		t.Errorf("site changed in a YAML round trip (-want +got):\n%s", diff)
	}
}

func TestDiskSelectorCEL(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		sel  DiskSelector
		want string
	}{
		{"serial", DiskSelector{Serial: "S5GXNX0T123456"}, `disk.serial == "S5GXNX0T123456" && !disk.readonly && !disk.cdrom`},
		{"wwid", DiskSelector{WWID: "naa.5000c500a1b2c3d4"}, `disk.wwid == "naa.5000c500a1b2c3d4" && !disk.readonly && !disk.cdrom`},
		{"model with quote", DiskSelector{Model: `Disk "X" \ 1`}, `disk.model == "Disk \"X\" \\ 1" && !disk.readonly && !disk.cdrom`},
		{"dev path", DiskSelector{DevPath: "/dev/nvme0n1"}, `disk.dev_path == "/dev/nvme0n1" && !disk.readonly && !disk.cdrom`},
		{"size range", DiskSelector{MinSize: "480GB", MaxSize: "1 TiB"}, `disk.size >= 480u * GB && disk.size <= 1u * TiB && !disk.readonly && !disk.cdrom`},
		{"bytes and kB", DiskSelector{MinSize: "1000", MaxSize: "2KB"}, `disk.size >= 1000u && disk.size <= 2u * kB && !disk.readonly && !disk.cdrom`},
		{
			"all",
			DiskSelector{Serial: "S", WWID: "W", Model: "M", MinSize: "1GiB", MaxSize: "2TB"},
			`disk.serial == "S" && disk.wwid == "W" && disk.model == "M" && disk.size >= 1u * GiB && disk.size <= 2u * TB && !disk.readonly && !disk.cdrom`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			got, err := tc.sel.Expression()
			if err != nil {
				t.Fatal(err)
			}

			if got != tc.want {
				t.Errorf("Expression = %s\nwant         %s", got, tc.want)
			}

			expr, err := tc.sel.Compile()
			if err != nil {
				t.Fatal(err)
			}

			// The compiled expression must also parse the way Talos re-parses it from YAML.
			text, err := expr.MarshalText()
			if err != nil {
				t.Fatal(err)
			}

			var back cel.Expression
			if err := back.UnmarshalText(text); err != nil {
				t.Fatal(err)
			}

			if err := back.ParseBool(celenv.DiskLocator()); err != nil {
				t.Errorf("re-parse: %v", err)
			}
		})
	}
}

func TestDiskSelectorEvaluates(t *testing.T) {
	t.Parallel()

	// Evaluate against disks the way Talos does, to prove the selector picks the right one.
	sel := DiskSelector{Model: "SAMSUNG", MinSize: "400GB"}

	expr, err := sel.Compile()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		disk  *blockpb.DiskSpec
		match bool
	}{
		{"match", &blockpb.DiskSpec{Model: "SAMSUNG", Size: 480e9}, true},
		{"too small", &blockpb.DiskSpec{Model: "SAMSUNG", Size: 240e9}, false},
		{"other model", &blockpb.DiskSpec{Model: "INTEL", Size: 480e9}, false},
		{"cdrom", &blockpb.DiskSpec{Model: "SAMSUNG", Size: 480e9, Cdrom: true}, false},
		{"read-only", &blockpb.DiskSpec{Model: "SAMSUNG", Size: 480e9, Readonly: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			got, err := expr.EvalBool(celenv.DiskLocator(), map[string]any{"disk": tc.disk, "system_disk": false})
			if err != nil {
				t.Fatal(err)
			}

			if got != tc.match {
				t.Errorf("match = %v, want %v", got, tc.match)
			}
		})
	}
}

func TestDiskSelectorErrors(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		sel  DiskSelector
		want string
	}{
		{DiskSelector{}, "set at least one of"},
		{DiskSelector{MinSize: "big"}, `size "big"`},
		{DiskSelector{MaxSize: "0GB"}, "must be greater than zero"},
		{DiskSelector{Serial: "a\nb"}, "control characters"},
		{DiskSelector{MinSize: "99999999999999TB"}, "too large"},
	} {
		if _, err := tc.sel.Compile(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%+v) = %v, want %q", tc.sel, err, tc.want)
		}
	}
}
