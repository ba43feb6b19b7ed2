package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"onramp/lab/netns"
)

// peerNetboot is a Netboot made of peers no one here wrote: ISC Kea for
// DHCP, tftpd-hpa for TFTP and net/http for the iPXE script and assets. It
// stands in for Onramp's own netboot to prove the lab's machines, firmware
// paths and guest kit, and it makes the same decisions the lab asks of
// Onramp's Booter: kernel+initrd for uefi and bios, the signed UKI for
// uefi-secureboot.
type peerNetboot struct {
	machines []Machine
	logDir   string

	mu      sync.Mutex
	fetched map[string][]string // mac → HTTP paths served
}

func (p *peerNetboot) served(mac string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.fetched[mac]...)
}

func (p *peerNetboot) Run(ctx context.Context, env NetbootEnv) error {
	server := env.ServerIP.String()
	root := filepath.Join(env.DataDir, "peer-tftp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{"lab/ipxe/ipxe.efi": "ipxe.efi", "lab/ipxe/undionly.kpxe": "undionly.kpxe"} {
		b, err := os.ReadFile(filepath.Join(env.AssetsDir, src))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o644); err != nil {
			return err
		}
	}
	kea := map[string]any{"Dhcp4": map[string]any{
		"interfaces-config": map[string]any{"interfaces": []string{env.Iface}, "dhcp-socket-type": "raw"},
		"lease-database":    map[string]any{"type": "memfile", "persist": false},
		"valid-lifetime":    600,
		"client-classes": []map[string]any{
			// iPXE (user class "iPXE", RFC 3004 option 77) gets the script URL.
			{"name": "ipxe", "test": "substring(option[77].hex,0,4) == 'iPXE'", "boot-file-name": "http://" + server + ":8080/boot.ipxe"},
			{"name": "efi", "test": "not member('ipxe') and (option[93].hex == 0x0007 or option[93].hex == 0x0009)", "next-server": server, "boot-file-name": "ipxe.efi"},
			{"name": "bios", "test": "not member('ipxe') and option[93].hex == 0x0000", "next-server": server, "boot-file-name": "undionly.kpxe"},
		},
		"subnet4": []map[string]any{{
			"id": 1, "subnet": env.Subnet.String(),
			"pools":       []map[string]any{{"pool": "10.77.0.100 - 10.77.0.199"}},
			"option-data": []map[string]any{{"name": "routers", "data": server}},
		}},
		"loggers": []map[string]any{{"name": "kea-dhcp4", "severity": "INFO",
			"output_options": []map[string]any{{"output": filepath.Join(p.logDir, "kea.log")}}}},
	}}
	confb, _ := json.MarshalIndent(kea, "", " ")
	conf := filepath.Join(p.logDir, "kea.json")
	if err := os.WriteFile(conf, confb, 0o644); err != nil {
		return err
	}
	keaCmd := netns.Command(ctx, env.NetNS, "kea-dhcp4", "-c", conf)
	keaCmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+p.logDir, "KEA_LOCKFILE_DIR="+p.logDir)
	tftpCmd := netns.Command(ctx, env.NetNS, "in.tftpd", "-L", "-u", "root", "-v", "-s", root, "-a", server+":69")
	for _, c := range []*exec.Cmd{keaCmd, tftpCmd} {
		logf, err := os.Create(filepath.Join(p.logDir, filepath.Base(c.Args[3])+".out"))
		if err != nil {
			return err
		}
		defer logf.Close()
		c.Stdout, c.Stderr = logf, logf
		c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
		c.WaitDelay = 5 * time.Second
	}

	var ln net.Listener
	if err := netns.Do(env.NetNS, func() error {
		var err error
		ln, err = net.Listen("tcp", server+":8080")
		return err
	}); err != nil {
		return fmt.Errorf("listen http in lab: %w", err)
	}
	byMAC := map[string]Machine{}
	for _, m := range p.machines {
		byMAC[m.MAC] = m
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "#!ipxe\nchain http://%s:8080/ipxe?mac=${net0/mac}\n", server)
	})
	mux.HandleFunc("GET /ipxe", func(w http.ResponseWriter, r *http.Request) {
		mac := r.URL.Query().Get("mac")
		p.mu.Lock()
		p.fetched[mac] = append(p.fetched[mac], "/ipxe")
		p.mu.Unlock()
		m, ok := byMAC[mac]
		base := "http://" + server + ":8080/assets/"
		switch {
		case !ok:
			http.Error(w, "unknown machine", http.StatusNotFound)
		case m.Firmware == FirmwareUEFISecureBoot:
			fmt.Fprintf(w, "#!ipxe\nchain %s%s\n", base, "lab/uki.signed.efi")
		default:
			// Debian's 2019 iPXE under UEFI wants initrd=<name> on the kernel line.
			fmt.Fprintf(w, "#!ipxe\nkernel %slab/vmlinuz initrd=initramfs.gz console=ttyS0,115200 panic=-1 loglevel=4\ninitrd %slab/initramfs.gz\nboot\n", base, base)
		}
	})
	files := http.StripPrefix("/assets/", http.FileServer(http.Dir(env.AssetsDir)))
	mux.HandleFunc("GET /assets/", func(w http.ResponseWriter, r *http.Request) {
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			p.mu.Lock()
			p.fetched["ip:"+ip] = append(p.fetched["ip:"+ip], r.URL.Path)
			p.mu.Unlock()
		}
		files.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	for _, c := range []*exec.Cmd{keaCmd, tftpCmd} {
		if err := c.Start(); err != nil {
			ln.Close()
			return fmt.Errorf("start %s: %w", c.Args[3], err)
		}
		go func() {
			err := c.Wait()
			if ctx.Err() == nil {
				err = fmt.Errorf("%s exited: %v", c.Args[3], err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	for range 2 { // wait for kea and tftpd (killed by ctx) to be reaped
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
		}
	}
	return first
}

// peerLog returns a peer's log text for failure messages.
func peerLog(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return tail(strings.ToValidUTF8(string(b), "?"), 2000)
}
