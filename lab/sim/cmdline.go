package sim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cmdline is what talossim takes from the kernel command line (/proc/cmdline).
type Cmdline struct {
	// Talos' own parameters.
	ConfigURL  string // talos.config=
	EventsSink string // talos.events.sink= (host:port)
	KmsgURL    string // talos.logging.kernel= (tcp://host:port or udp://host:port)

	// Simulator settings, onramp.sim.*:
	UKIFingerprint string        // onramp.sim.uki_fpr=   SecurityState.ukiSigningKeyFingerprint
	PCRFingerprint string        // onramp.sim.pcr_fpr=   SecurityState.pcrSigningKeyFingerprint
	BootedWithUKI  *bool         // onramp.sim.uki=0|1    override of the StubInfo EFI variable check
	StateDir       string        // onramp.sim.state=     where the install marker lives
	ListenAddr     string        // onramp.sim.listen=    default :50000
	InstallDelay   time.Duration // onramp.sim.install_delay=  simulated install + reboot time
}

// ParseCmdline reads the parameters talossim understands and ignores the rest. A
// value may be quoted with double quotes (as the kernel allows).
func ParseCmdline(s string) (Cmdline, error) {
	var c Cmdline

	for _, f := range splitCmdline(s) {
		k, v, _ := strings.Cut(f, "=")

		switch k {
		case "talos.config":
			c.ConfigURL = v
		case "talos.events.sink":
			c.EventsSink = v
		case "talos.logging.kernel":
			c.KmsgURL = v
		case "onramp.sim.uki_fpr":
			c.UKIFingerprint = v
		case "onramp.sim.pcr_fpr":
			c.PCRFingerprint = v
		case "onramp.sim.uki":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, fmt.Errorf("parse %s: %w", f, err)
			}

			c.BootedWithUKI = &b
		case "onramp.sim.state":
			c.StateDir = v
		case "onramp.sim.listen":
			c.ListenAddr = v
		case "onramp.sim.install_delay":
			d, err := time.ParseDuration(v)
			if err != nil {
				return c, fmt.Errorf("parse %s: %w", f, err)
			}

			c.InstallDelay = d
		}
	}

	return c, nil
}

// splitCmdline splits on spaces outside double quotes and drops the quotes.
func splitCmdline(s string) []string {
	var (
		out   []string
		cur   strings.Builder
		quote bool
	)

	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}

	// bytes, not runes: the kernel command line is not necessarily UTF-8
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == '"':
			quote = !quote
		case !quote && (b == ' ' || b == '\n' || b == '\t'):
			flush()
		default:
			cur.WriteByte(b)
		}
	}

	flush()

	return out
}

// Args renders c as kernel command-line parameters (for the lab's iPXE script or UKI
// .cmdline section); ParseCmdline reads them back. Empty fields are left out.
func (c Cmdline) Args() []string {
	var out []string

	add := func(k, v string) {
		if v == "" {
			return
		}

		if strings.ContainsAny(v, " \t\n") {
			v = `"` + v + `"`
		}

		out = append(out, k+"="+v)
	}

	add("talos.config", c.ConfigURL)
	add("talos.events.sink", c.EventsSink)
	add("talos.logging.kernel", c.KmsgURL)
	add("onramp.sim.uki_fpr", c.UKIFingerprint)
	add("onramp.sim.pcr_fpr", c.PCRFingerprint)

	if c.BootedWithUKI != nil {
		add("onramp.sim.uki", strconv.FormatBool(*c.BootedWithUKI))
	}

	add("onramp.sim.state", c.StateDir)
	add("onramp.sim.listen", c.ListenAddr)

	if c.InstallDelay != 0 {
		add("onramp.sim.install_delay", c.InstallDelay.String())
	}

	return out
}
