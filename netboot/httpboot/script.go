package httpboot

import (
	"errors"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"onramp/netboot"
	"onramp/netboot/ipxe"
)

// The /ipxe query: mac (required, any net.ParseMAC form), uuid (SMBIOS UUID,
// ignored unless 8-4-4-4-12 hex), and the firmware architecture either as
// arch=<DHCP option 93 number> or as iPXE's platform= and buildarch=.

// ScriptURL is the URL the DHCP side hands an iPXE client (user class
// "iPXE") as its boot file name. iPXE expands the ${...} settings in a DHCP
// boot file name before fetching it, so the request carries the machine's
// MAC, SMBIOS UUID, firmware platform ("efi"/"pcbios") and CPU
// ("x86_64"/"arm64"/"i386").
func ScriptURL(base string) string {
	return strings.TrimRight(base, "/") + "/ipxe?mac=${mac}&uuid=${uuid}&platform=${platform}&buildarch=${buildarch}"
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// archFrom maps iPXE's ${platform} and ${buildarch} to option 93 values.
func archFrom(platform, buildarch string) netboot.Arch {
	switch {
	case platform == "pcbios":
		return netboot.ArchBIOS
	case platform == "efi" && buildarch == "x86_64":
		return netboot.ArchUEFIx64
	case platform == "efi" && buildarch == "arm64":
		return netboot.ArchUEFIarm64
	case platform == "efi" && buildarch == "i386":
		return netboot.ArchUEFIx86
	default:
		return netboot.ArchUnknown
	}
}

func (h *Handler) serveScript(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	reply := func(code int, body []byte) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	mac, err := net.ParseMAC(q.Get("mac"))
	if err != nil {
		h.emit(netboot.Event{Kind: netboot.EventIPXEScript, IP: ip,
			Err: "iPXE asked for its script without a readable MAC address (" + printable(q.Get("mac")) + "); check the boot file URL the DHCP server hands out"})
		reply(http.StatusBadRequest, ipxe.Message("Onramp: this request carries no MAC address, so Onramp cannot tell which machine this is.\nCheck the boot URL the DHCP server hands out."))
		return
	}
	m := netboot.Machine{MAC: mac, Arch: archFrom(q.Get("platform"), q.Get("buildarch"))}
	if a, err := strconv.ParseUint(q.Get("arch"), 10, 16); err == nil {
		m.Arch = netboot.Arch(a) // option 93 as the DHCP side saw it
	}
	if u := q.Get("uuid"); uuidRE.MatchString(u) {
		m.UUID = strings.ToLower(u)
	}
	ev := netboot.Event{Kind: netboot.EventIPXEScript, IP: ip, MAC: mac.String(), UUID: m.UUID, Arch: m.Arch.String(), File: "/ipxe"}

	if h.booter == nil {
		err = netboot.ErrNotApproved
	}
	var d netboot.Decision
	if err == nil {
		d, err = h.booter.Boot(r.Context(), m)
	}
	switch {
	case errors.Is(err, netboot.ErrNotApproved):
		ev.Err = "machine " + mac.String() + " is not approved for network boot; it was shown a message and told to exit"
		h.emit(ev)
		reply(http.StatusForbidden, ipxe.Message("Onramp: this machine ("+mac.String()+") is not approved for network boot.\nApprove it on the Onramp screen, then restart it."))
		return
	case err != nil:
		ev.Err = "Onramp could not decide what machine " + mac.String() + " boots: " + err.Error()
		h.emit(ev)
		h.log.Warn("boot decision failed", "mac", mac.String(), "err", err)
		reply(http.StatusInternalServerError, ipxe.Message("Onramp: could not decide what this machine ("+mac.String()+") boots.\nSee the Onramp screen."))
		return
	}
	base := h.base
	if base == "" {
		base = "http://" + r.Host
	}
	script, err := ipxe.Render(d, ipxe.Params{BaseURL: base, MAC: mac.String(), UUID: m.UUID})
	if err != nil {
		ev.Err = "Onramp could not write the boot script for " + mac.String() + ": " + err.Error()
		h.emit(ev)
		h.log.Warn("render ipxe script", "mac", mac.String(), "err", err)
		reply(http.StatusInternalServerError, ipxe.Message("Onramp: the boot settings for this machine ("+mac.String()+") are invalid.\nSee the Onramp screen."))
		return
	}
	ev.Detail = string(d.Kind)
	switch d.Kind {
	case netboot.BootKernel:
		ev.Detail += ": " + d.Kernel + " + " + d.Initrd
	case netboot.BootUKI:
		ev.Detail += ": " + d.UKI
	case netboot.BootEnroll:
		ev.Detail += ": " + d.ISO
	}
	h.emit(ev)
	h.log.Info("ipxe script", "ip", ip, "mac", mac.String(), "uuid", m.UUID, "kind", d.Kind)
	reply(http.StatusOK, script)
}
