package dhcp

import (
	"context"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dhclient runs ISC dhclient once in ns with a config that sends the given
// vendor class and option 93, and returns the variables its script saw at
// BOUND (nil if no lease).
func dhclient(t *testing.T, ns, iface, mac, vendor string, arch int) map[string]string {
	t.Helper()
	needBin(t, "dhclient")
	nettest.Sh(t, "ip", "-n", ns, "link", "set", iface, "address", mac)
	dir := t.TempDir()
	conf := "option onramp-arch code 93 = unsigned integer 16;\n" +
		"request subnet-mask, routers, tftp-server-name, bootfile-name;\n"
	if vendor != "" {
		conf += "send vendor-class-identifier \"" + vendor + "\";\n"
		conf += "send onramp-arch " + strconv.Itoa(arch) + ";\n"
	}
	os.WriteFile(dir+"/dhclient.conf", []byte(conf), 0o644)
	os.WriteFile(dir+"/script.sh", []byte("#!/bin/sh\ncase \"$reason\" in BOUND|REBOOT) env > "+dir+"/bound.tmp; mv "+dir+"/bound.tmp "+dir+"/bound;; esac\nexit 0\n"), 0o755)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "dhclient", "-4", "-1", "-d", "-v",
		"-cf", dir+"/dhclient.conf", "-lf", dir+"/leases", "-pf", dir+"/pid", "-sf", dir+"/script.sh", iface)
	out := &nettest.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dhclient: %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, err := os.ReadFile(dir + "/bound")
		if err != nil {
			continue
		}
		env := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = strings.Trim(v, "'")
			}
		}
		return env
	}
	t.Logf("dhclient got no lease:\n%s", out.String())
	return nil
}

func TestDhclientIsolated(t *testing.T) {
	t.Parallel()
	l := newIsolatedLab(t)
	startServer(t, l.S, l.newServer())
	cases := []struct {
		name, mac, vendor string
		arch              int
		want              string
	}{
		{"plain", "02:00:00:00:01:10", "", 0, ""},
		{"bios", "02:00:00:00:01:11", "PXEClient:Arch:00000:UNDI:002001", 0, "undionly.kpxe"},
		{"uefi-x64", "02:00:00:00:01:12", "PXEClient:Arch:00007:UNDI:003016", 7, "ipxe.efi"},
		{"uefi-x64-alt", "02:00:00:00:01:13", "PXEClient:Arch:00009:UNDI:003016", 9, "ipxe.efi"},
	}
	for _, c := range cases {
		env := dhclient(t, l.C, l.cIf, c.mac, c.vendor, c.arch)
		if env == nil {
			t.Errorf("%s: no lease", c.name)
			continue
		}
		if !strings.HasPrefix(env["new_ip_address"], "10.77.0.") || env["new_subnet_mask"] != "255.255.255.0" {
			t.Errorf("%s: ip=%q mask=%q", c.name, env["new_ip_address"], env["new_subnet_mask"])
		}
		t.Logf("%s: %s file=%q opt67=%q next-server=%q", c.name, env["new_ip_address"], env["new_filename"], env["new_bootfile_name"], env["new_next_server"])
		if env["new_filename"] != c.want {
			t.Errorf("%s: file field %q, want %q", c.name, env["new_filename"], c.want)
		}
		if c.want != "" && (env["new_bootfile_name"] != c.want || env["new_tftp_server_name"] != "10.77.0.1" || env["new_next_server"] != "10.77.0.1") {
			t.Errorf("%s: option 67=%q option 66=%q next-server=%q", c.name, env["new_bootfile_name"], env["new_tftp_server_name"], env["new_next_server"])
		}
	}
}
