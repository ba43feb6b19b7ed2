// Package ipxe renders the per-machine iPXE script that Onramp's HTTP server
// hands a machine once it runs iPXE (DHCP user class "iPXE", RFC 3004 option 77).
//
// An iPXE script is a text file that starts with "#!ipxe"; each line is one
// command. iPXE expands "${name}" settings anywhere on a line before it splits
// the line into words at spaces, treats a word that starts with '#' as the start
// of a comment, and treats the words "||", "&&" and ";" as operators. So any
// value Onramp writes into a script must not contain whitespace, '$', '#',
// quotes, backslashes or control characters, and must not be an operator word:
// otherwise a value could add a command or a kernel argument the app never
// chose. Render validates every input and rejects such values with an error
// that says which input and why; it never tries to escape them (the iPXE
// builds found in the field disagree on quoting).
//
// The only placeholders allowed in kernel arguments are "${mac}" and
// "${uuid}" (Talos expands the same names in talos.config=); Render replaces
// them itself with the validated Params values, so the script that leaves
// Onramp contains no expansion of any value it was given (the enrollment
// script's fixed guard reads iPXE's own ${platform}).
package ipxe

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"

	"onramp/netboot"
)

// Params are the per-request values a script is rendered with.
type Params struct {
	// BaseURL is where Onramp's HTTP server is reached by the machine, e.g.
	// "http://10.77.0.1:8080". Assets are fetched from BaseURL + "/assets/".
	BaseURL string
	// MAC and UUID identify the machine (from the /ipxe query); they replace
	// ${mac} and ${uuid} in kernel arguments and appear in a comment.
	MAC  string
	UUID string
}

// ErrInvalid is wrapped by every validation error from Render.
var ErrInvalid = errors.New("invalid iPXE script input")

// maxArgs bounds the number of kernel arguments (Linux's command line is
// limited to a few KiB anyway).
const (
	maxArgs   = 128
	maxArgLen = 1024
	maxPath   = 512
)

var (
	// assetPathRE is the set of characters allowed in an asset path: it is
	// written into a URL unescaped, so it must need no escaping.
	assetPathRE = regexp.MustCompile(`^[A-Za-z0-9._~+=,@-]+(/[A-Za-z0-9._~+=,@-]+)*$`)
	uuidRE      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Render returns the iPXE script for decision d.
//
//   - BootKernel: fetch kernel and initramfs from BaseURL/assets/ and boot with
//     d.Cmdline; any failing step jumps to a failure path that tells the
//     technician on screen what happened, waits and exits to the firmware
//     (which then tries its next boot option or retries the network boot).
//   - BootUKI: chain the unified kernel image.
//   - BootEnroll: sanboot the SecureBoot key-enrollment ISO over HTTP
//     (UEFI only; a legacy BIOS machine is told why it cannot enroll).
//   - BootLocal: exit, so the firmware boots from its next device (the disk).
func Render(d netboot.Decision, p Params) ([]byte, error) {
	mac, uuid, err := checkParams(p)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "# Onramp boot script for %s", orNone(mac))
	if uuid != "" {
		fmt.Fprintf(&b, " (uuid %s)", uuid)
	}
	b.WriteString("\n")
	switch d.Kind {
	case netboot.BootKernel:
		base, err := checkBase(p.BaseURL)
		if err != nil {
			return nil, err
		}
		kernel, err := checkAssetPath("kernel", d.Kernel)
		if err != nil {
			return nil, err
		}
		initrd, err := checkAssetPath("initrd", d.Initrd)
		if err != nil {
			return nil, err
		}
		args, err := checkArgs(d.Cmdline, mac, uuid)
		if err != nil {
			return nil, err
		}
		// Debian's 2019 iPXE build (and other iPXE builds before 2021) does
		// not pass the initramfs to a Linux kernel booted through the EFI stub
		// unless the kernel command line names it: "initrd=<image name>",
		// where the image name is the last path segment of the initrd URL.
		// Newer builds ignore the argument, so it is always written.
		b.WriteString("# initrd=<name> on the kernel line: Debian's 2019 iPXE under UEFI needs it to hand over the initramfs.\n")
		fmt.Fprintf(&b, "echo Onramp: loading %s\n", kernel)
		fmt.Fprintf(&b, "kernel %s/assets/%s initrd=%s", base, kernel, path.Base(initrd))
		for _, a := range args {
			b.WriteString(" ")
			b.WriteString(a)
		}
		b.WriteString(" || goto failed\n")
		fmt.Fprintf(&b, "echo Onramp: loading %s\n", initrd)
		fmt.Fprintf(&b, "initrd %s/assets/%s || goto failed\n", base, initrd)
		b.WriteString("boot || goto failed\n")
		writeFailed(&b)
	case netboot.BootUKI:
		base, err := checkBase(p.BaseURL)
		if err != nil {
			return nil, err
		}
		uki, err := checkAssetPath("uki", d.UKI)
		if err != nil {
			return nil, err
		}
		// A signed UKI carries its own kernel command line in its .cmdline
		// section; under SecureBoot the stub ignores anything iPXE passes, so
		// no arguments are written here.
		b.WriteString("# The UKI's embedded command line wins under SecureBoot: no arguments are passed.\n")
		fmt.Fprintf(&b, "echo Onramp: loading %s\n", uki)
		fmt.Fprintf(&b, "chain %s/assets/%s || goto failed\n", base, uki)
		writeFailed(&b)
	case netboot.BootEnroll:
		base, err := checkBase(p.BaseURL)
		if err != nil {
			return nil, err
		}
		iso, err := checkAssetPath("iso", d.ISO)
		if err != nil {
			return nil, err
		}
		// sanboot attaches the ISO as a block device read over HTTP with
		// Range requests (iPXE detects ISO9660 and uses 2048-byte
		// sectors), and under UEFI boots \EFI\BOOT\BOOTX64.EFI from it.
		// --no-describe: an HTTP "SAN" has no iBFT/ACPI description to
		// install. The enrollment image is UEFI-only: a machine in legacy
		// BIOS mode is told so instead of booting something that cannot
		// work. The guard uses iPXE's own ${platform} setting, the only
		// expansion Render writes.
		b.WriteString("# SecureBoot key enrollment: systemd-boot on the ISO enrolls the site's keys (firmware in setup mode) and resets.\n")
		b.WriteString("iseq ${platform} efi || goto notefi\n")
		fmt.Fprintf(&b, "echo Onramp: booting the SecureBoot key enrollment image %s\n", iso)
		fmt.Fprintf(&b, "sanboot --no-describe %s/assets/%s || goto failed\n", base, iso)
		writeFailed(&b)
		b.WriteString(":notefi\n")
		b.WriteString("echo Onramp: this machine runs its firmware in legacy BIOS mode. SecureBoot keys can only be enrolled under UEFI: switch the firmware to UEFI and restart.\n")
		b.WriteString("sleep 30\n")
		b.WriteString("exit 1\n")
	case netboot.BootLocal:
		b.WriteString("echo Onramp: booting from local disk\n")
		b.WriteString("exit\n")
	default:
		return nil, fmt.Errorf("%w: unknown decision kind %q", ErrInvalid, d.Kind)
	}
	return []byte(b.String()), nil
}

// Message renders a script that only shows msg on the machine's screen, waits
// and exits: what a machine gets when it must not boot (not approved) or when
// Onramp cannot answer. Characters iPXE would interpret are replaced by '_'.
func Message(msg string) []byte {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	for line := range strings.SplitSeq(msg, "\n") {
		b.WriteString("echo ")
		b.WriteString(sanitizeEcho(line))
		b.WriteString("\n")
	}
	b.WriteString("sleep 30\n")
	b.WriteString("exit 1\n")
	return []byte(b.String())
}

// sanitizeEcho keeps words of msg printable by echo without expansion,
// comments or operators.
func sanitizeEcho(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '$' || r == '#' || r == '"' || r == '\'' || r == '\\' || r == '|' || r == '&' || r == ';':
			b.WriteByte('_')
		case r < 0x20 || r == 0x7f || r > 0x7e:
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

func writeFailed(b *strings.Builder) {
	b.WriteString("exit 0\n")
	b.WriteString(":failed\n")
	b.WriteString("echo Onramp: network boot failed (see the line above). Check the Onramp screen. Retrying from firmware in 10 seconds.\n")
	b.WriteString("sleep 10\n")
	b.WriteString("exit 1\n")
}

func orNone(s string) string {
	if s == "" {
		return "unknown machine"
	}
	return s
}

func checkParams(p Params) (mac, uuid string, err error) {
	if p.MAC != "" {
		hw, err := net.ParseMAC(p.MAC)
		if err != nil {
			return "", "", fmt.Errorf("%w: MAC %q is not a hardware address", ErrInvalid, p.MAC)
		}
		mac = hw.String()
	}
	if p.UUID != "" {
		if !uuidRE.MatchString(p.UUID) {
			return "", "", fmt.Errorf("%w: UUID %q is not of the form 8-4-4-4-12 hex digits", ErrInvalid, p.UUID)
		}
		uuid = strings.ToLower(p.UUID)
	}
	return mac, uuid, nil
}

func checkBase(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: base URL is empty", ErrInvalid)
	}
	if i := strings.IndexFunc(s, badURLRune); i >= 0 {
		return "", fmt.Errorf("%w: base URL %q contains %q, which iPXE would interpret", ErrInvalid, s, s[i])
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: base URL %q: %v", ErrInvalid, s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%w: base URL %q must start with http:// or https://", ErrInvalid, s)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%w: base URL %q must be scheme://host[:port][/path] only", ErrInvalid, s)
	}
	return strings.TrimRight(s, "/"), nil
}

func badURLRune(r rune) bool {
	return r <= 0x20 || r >= 0x7f || strings.ContainsRune("$#\"'\\|&;<>`{}^", r)
}

func checkAssetPath(what, p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: %s path is empty", ErrInvalid, what)
	}
	if len(p) > maxPath {
		return "", fmt.Errorf("%w: %s path is longer than %d bytes", ErrInvalid, what, maxPath)
	}
	if !fs.ValidPath(p) || !assetPathRE.MatchString(p) {
		return "", fmt.Errorf("%w: %s path %q must be a relative path of letters, digits and . _ ~ + = , @ - (no .., no spaces, no $)", ErrInvalid, what, p)
	}
	return p, nil
}

// checkArgs validates kernel arguments and substitutes ${mac} and ${uuid}.
func checkArgs(args []string, mac, uuid string) ([]string, error) {
	if len(args) > maxArgs {
		return nil, fmt.Errorf("%w: %d kernel arguments, at most %d", ErrInvalid, len(args), maxArgs)
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		r, err := checkArg(a, mac, uuid)
		if err != nil {
			return nil, fmt.Errorf("%w: kernel argument %d %q: %s", ErrInvalid, i+1, a, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func checkArg(a, mac, uuid string) (string, error) {
	if a == "" {
		return "", errors.New("is empty")
	}
	if len(a) > maxArgLen {
		return "", fmt.Errorf("is longer than %d bytes", maxArgLen)
	}
	if strings.HasPrefix(a, "initrd=") {
		return "", errors.New("initrd= is written by Onramp itself")
	}
	if strings.Contains(a, "${mac}") {
		if mac == "" {
			return "", errors.New("uses ${mac} but the machine's MAC is not known")
		}
		a = strings.ReplaceAll(a, "${mac}", mac)
	}
	if strings.Contains(a, "${uuid}") {
		if uuid == "" {
			return "", errors.New("uses ${uuid} but the machine's UUID is not known")
		}
		a = strings.ReplaceAll(a, "${uuid}", uuid)
	}
	switch a {
	case "||", "&&", ";":
		return "", errors.New("is an iPXE operator")
	}
	if a[0] == '#' {
		return "", errors.New("starts with '#', which starts an iPXE comment")
	}
	for _, r := range a {
		switch {
		case r <= 0x20 || r == 0x7f:
			return "", errors.New("contains a space or a control character (one argument per entry)")
		case r > 0x7e:
			return "", errors.New("contains a non-ASCII character")
		case r == '$':
			return "", errors.New("contains '$' (only ${mac} and ${uuid} are allowed)")
		case r == '"' || r == '\'' || r == '\\':
			return "", errors.New("contains a quote or backslash")
		}
	}
	return a, nil
}
