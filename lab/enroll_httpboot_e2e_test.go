package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"onramp/lab/kit"
	"onramp/lab/netns"
	"onramp/secureboot"
)

// TestSecureBootEnrollmentHTTPBoot is how a real server gets the enrollment
// image over the network: OVMF in setup mode, on a private namespace, is
// offered the ISO by UEFI HTTP boot (ISC Kea answers the HTTPClient vendor
// class with the URL, net/http serves the file as application/vnd.efi-iso),
// mounts it as a RAM disk, boots systemd-boot from its El Torito image, and
// systemd-boot enrolls the site's keys and resets. Set ONRAMP_LAB_E2E=1.
func TestSecureBootEnrollmentHTTPBoot(t *testing.T) {
	if os.Getenv("ONRAMP_LAB_E2E") != "1" {
		t.Skip("set ONRAMP_LAB_E2E=1 to HTTP-boot the SecureBoot enrollment ISO in the lab")
	}
	needRoot(t, "ip", "kea-dhcp4", "mkfs.vfat", "mcopy", "xorriso")
	needQEMU(t)
	ctx := t.Context()
	work := t.TempDir()
	ks, err := secureboot.GenerateKeys("Lab HTTP Boot Site", secureboot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	enr, err := ks.Enrollment(secureboot.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sdboot, err := kit.FetchSystemdBoot(ctx, testCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	esp, iso := filepath.Join(work, "esp.img"), filepath.Join(work, "enroll.iso")
	if err := secureboot.BuildESP(ctx, enr, sdboot, esp); err != nil {
		t.Fatal(err)
	}
	if err := secureboot.BuildISO(ctx, esp, iso); err != nil {
		t.Fatal(err)
	}

	ns := fmt.Sprintf("osb-t%06x", rand.IntN(1<<24))
	tap := "osbtap0"
	if err := netns.Create(ctx, netns.Config{Name: ns, Taps: []string{tap}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Destroy(context.Background(), ns); err != nil {
			t.Errorf("destroy namespace %s: %v", ns, err)
		}
	})
	server := netns.DefaultIPv4.Addr().String()
	url := "http://" + server + ":8080/enroll.iso"

	// Kea: only the HTTP boot client gets a boot file (the URL) and option
	// 60 "HTTPClient" back; the firmware's PXE attempts get a bare lease.
	kea := map[string]any{"Dhcp4": map[string]any{
		"interfaces-config": map[string]any{"interfaces": []string{netns.DefaultBridge}, "dhcp-socket-type": "raw"},
		"lease-database":    map[string]any{"type": "memfile", "persist": false},
		"valid-lifetime":    600,
		"client-classes": []map[string]any{{
			"name":           "httpboot",
			"test":           "substring(option[60].hex,0,10) == 'HTTPClient'",
			"boot-file-name": url,
			"option-data":    []map[string]any{{"name": "vendor-class-identifier", "data": "HTTPClient", "always-send": true}},
		}},
		"subnet4": []map[string]any{{
			"id": 1, "subnet": netns.DefaultIPv4.Masked().String(),
			"pools": []map[string]any{{"pool": "10.77.0.100 - 10.77.0.199"}},
		}},
		"loggers": []map[string]any{{"name": "kea-dhcp4", "severity": "INFO",
			"output_options": []map[string]any{{"output": filepath.Join(work, "kea.log")}}}},
	}}
	confb, _ := json.Marshal(kea)
	conf := filepath.Join(work, "kea.json")
	if err := os.WriteFile(conf, confb, 0o644); err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithCancel(ctx)
	keaCmd := netns.Command(kctx, ns, "kea-dhcp4", "-c", conf)
	keaCmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+work, "KEA_LOCKFILE_DIR="+work)
	keaOut, _ := os.Create(filepath.Join(work, "kea.out"))
	keaCmd.Stdout, keaCmd.Stderr = keaOut, keaOut
	keaCmd.Cancel = func() error { return keaCmd.Process.Signal(syscall.SIGTERM) }
	keaCmd.WaitDelay = 5 * time.Second
	if err := keaCmd.Start(); err != nil {
		kcancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kcancel()
		_ = keaCmd.Wait()
		keaOut.Close()
	})

	var ln net.Listener
	if err := netns.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", server+":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var served atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /enroll.iso", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		// EDK2's HttpBootDxe picks a RAM disk of type virtual CD for this
		// media type (UEFI 2.10 section 24.7.2.1).
		w.Header().Set("Content-Type", "application/vnd.efi-iso")
		http.ServeFile(w, r, iso)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	m := NewMachine(51, FirmwareUEFISecureBoot, KeysSetup, false, 0)
	vm := &VM{Machine: m, Dir: filepath.Join(work, m.Name), NetNS: ns, Tap: tap, HTTPBootOnly: true}
	runCtx, cancel := context.WithTimeout(ctx, 180*time.Second)
	defer cancel()
	start := time.Now()
	err = vm.Run(runCtx)
	took := time.Since(start)
	serial, _ := os.ReadFile(vm.SerialLog())
	if !errors.Is(err, ErrExited) {
		keaLog, _ := os.ReadFile(filepath.Join(work, "kea.log"))
		t.Fatalf("HTTP-boot enrollment: %v after %s (ISO fetched %d times), want QEMU to exit on systemd-boot's reset; serial tail:\n%s\nkea:\n%s",
			err, took, served.Load(), tail(string(serial), 3000), tail(string(keaLog), 1500))
	}
	if served.Load() == 0 || !strings.Contains(string(serial), `Enrolling secure boot keys from directory: \loader\keys\auto`) {
		t.Fatalf("QEMU exited, but the ISO was fetched %d times and systemd-boot said no enrollment; serial tail:\n%s", served.Load(), tail(string(serial), 3000))
	}
	t.Logf("HTTP boot enrollment: power-on → DHCP → HTTP %s → RAM disk → systemd-boot → enrolled → reset in %s", url, took.Round(100*time.Millisecond))

	varsFD, err := os.ReadFile(vm.varsPath())
	if err != nil {
		t.Fatal(err)
	}
	vars, err := secureboot.ParseVarStore(varsFD)
	if err != nil {
		t.Fatal(err)
	}
	pk := secureboot.FindVariable(vars, "PK", secureboot.GlobalVariable)
	if pk == nil {
		t.Fatal("no PK after enrollment")
	}
	lists, _ := secureboot.ParseSignatureLists(pk.Data)
	certs, _ := secureboot.Certificates(lists)
	if len(certs) != 1 || secureboot.CertFingerprint(certs[0].Raw) != ks.Fingerprints().PK {
		t.Errorf("enrolled PK is not the site's %s", ks.Fingerprints().PK)
	}
}
