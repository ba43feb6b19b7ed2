package ipxe

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"onramp/netboot"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

var talosArgs = []string{
	"talos.platform=metal",
	"console=ttyS0",
	"talos.config=http://10.77.0.1:8080/config/abc?mac=${mac}&uuid=${uuid}",
	"talos.events.sink=[fd77::1]:4002",
	"talos.logging.kernel=udp://10.77.0.1:4001",
}

var params = Params{BaseURL: "http://10.77.0.1:8080", MAC: "52-54-00-77-00-10", UUID: "0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0"}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    netboot.Decision
		p    Params
	}{
		{"kernel", netboot.Decision{Kind: netboot.BootKernel, Kernel: "talos/v1.14.1/amd64/vmlinuz", Initrd: "talos/v1.14.1/amd64/initramfs.xz", Cmdline: talosArgs}, params},
		{"kernel-noargs", netboot.Decision{Kind: netboot.BootKernel, Kernel: "vmlinuz", Initrd: "initrd.gz"}, Params{BaseURL: "http://10.77.0.1:8080/"}},
		{"uki", netboot.Decision{Kind: netboot.BootUKI, UKI: "talos/v1.14.1/amd64/uki.signed.efi", Cmdline: []string{"ignored"}}, params},
		{"local", netboot.Decision{Kind: netboot.BootLocal}, params},
		{"enroll", netboot.Decision{Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"}, params},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Render(tt.d, tt.p)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			golden := filepath.Join("testdata", tt.name+".ipxe")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Render mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderRejects(t *testing.T) {
	t.Parallel()
	kernel := func(args ...string) netboot.Decision {
		return netboot.Decision{Kind: netboot.BootKernel, Kernel: "k", Initrd: "i", Cmdline: args}
	}
	tests := []struct {
		name string
		d    netboot.Decision
		p    Params
	}{
		{"newline in arg", kernel("a=b\nshell"), params},
		{"space in arg", kernel("a=b c"), params},
		{"tab in arg", kernel("a=b\tc"), params},
		{"expansion", kernel("x=${serial}"), params},
		{"nested expansion", kernel("x=${${mac}}"), params},
		{"dollar", kernel("x=$"), params},
		{"comment", kernel("#x"), params},
		{"operator or", kernel("||"), params},
		{"operator and", kernel("&&"), params},
		{"operator semi", kernel(";"), params},
		{"quote", kernel(`x="y"`), params},
		{"backslash", kernel(`x=\y`), params},
		{"empty arg", kernel(""), params},
		{"non-ascii", kernel("x=é"), params},
		{"initrd arg", kernel("initrd=evil"), params},
		{"mac unknown", kernel("m=${mac}"), Params{BaseURL: "http://h"}},
		{"uuid unknown", kernel("u=${uuid}"), Params{BaseURL: "http://h"}},
		{"bad mac", kernel(), Params{BaseURL: "http://h", MAC: "zz"}},
		{"bad uuid", kernel(), Params{BaseURL: "http://h", UUID: "x\nshell"}},
		{"kernel traversal", netboot.Decision{Kind: netboot.BootKernel, Kernel: "../etc/passwd", Initrd: "i"}, params},
		{"kernel absolute", netboot.Decision{Kind: netboot.BootKernel, Kernel: "/vmlinuz", Initrd: "i"}, params},
		{"kernel space", netboot.Decision{Kind: netboot.BootKernel, Kernel: "a b", Initrd: "i"}, params},
		{"initrd expansion", netboot.Decision{Kind: netboot.BootKernel, Kernel: "k", Initrd: "${x}"}, params},
		{"empty kernel", netboot.Decision{Kind: netboot.BootKernel, Initrd: "i"}, params},
		{"uki newline", netboot.Decision{Kind: netboot.BootUKI, UKI: "u\nshell"}, params},
		{"base empty", kernel(), Params{}},
		{"base scheme", kernel(), Params{BaseURL: "tftp://10.77.0.1"}},
		{"base space", kernel(), Params{BaseURL: "http://h x"}},
		{"base dollar", kernel(), Params{BaseURL: "http://${next-server}"}},
		{"base query", kernel(), Params{BaseURL: "http://h/?a=b"}},
		{"unknown kind", netboot.Decision{Kind: "pxelinux"}, params},
		{"enroll no iso", netboot.Decision{Kind: netboot.BootEnroll}, params},
		{"enroll iso traversal", netboot.Decision{Kind: netboot.BootEnroll, ISO: "../enroll.iso"}, params},
		{"enroll iso operator", netboot.Decision{Kind: netboot.BootEnroll, ISO: "e.iso || shell"}, params},
		{"enroll iso expansion", netboot.Decision{Kind: netboot.BootEnroll, ISO: "${root-path}"}, params},
		{"enroll no base", netboot.Decision{Kind: netboot.BootEnroll, ISO: "e.iso"}, Params{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Render(tt.d, tt.p)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Render = %q, %v; want an ErrInvalid error", got, err)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	t.Parallel()
	got := string(Message("Machine 52:54:00:77:00:10 is not approved.\n${evil} || shell # x"))
	want := "#!ipxe\necho Machine 52:54:00:77:00:10 is not approved.\necho _{evil} __ shell _ x\nsleep 30\nexit 1\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Message mismatch (-want +got):\n%s", diff)
	}
}

// checkScript verifies the properties every rendered kernel script has: the
// fixed line structure, and on the kernel line exactly the given args, each
// once and intact, as separate words.
func checkScript(t *testing.T, script []byte, args []string) {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	wantPrefixes := []string{"#!ipxe", "# Onramp boot script for ", "# initrd=", "echo Onramp: loading ", "kernel ", "echo Onramp: loading ", "initrd ", "boot || goto failed", "exit 0", ":failed", "echo Onramp: network boot failed", "sleep 10", "exit 1"}
	if len(lines) != len(wantPrefixes) {
		t.Fatalf("script has %d lines, want %d:\n%s", len(lines), len(wantPrefixes), script)
	}
	for i, p := range wantPrefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Fatalf("line %d = %q, want prefix %q", i+1, lines[i], p)
		}
	}
	for i, l := range lines {
		if i >= 2 && strings.Contains(l, "$") {
			t.Fatalf("line %d contains an expansion: %q", i+1, l)
		}
	}
	words := strings.Split(lines[4], " ")
	if len(words) != 3+len(args)+3 || words[len(words)-3] != "||" {
		t.Fatalf("kernel line has words %q, want kernel URL initrd= %d args || goto failed", words, len(args))
	}
	if diff := cmp.Diff(args, words[3:3+len(args)], cmp.Comparer(func(a, b string) bool { return a == b })); len(args) > 0 && diff != "" {
		t.Fatalf("kernel args (-want +got):\n%s", diff)
	}
	for _, w := range words[3 : 3+len(args)] {
		if w == "" || w[0] == '#' || w == "||" || w == "&&" || w == ";" {
			t.Fatalf("kernel line word %q would be interpreted by iPXE", w)
		}
	}
}

func FuzzRender(f *testing.F) {
	f.Add("talos/v1.14.1/amd64/vmlinuz", "talos/initramfs.xz", "talos.platform=metal", "talos.config=http://h/c?m=${mac}", "http://10.77.0.1:8080", "52:54:00:77:00:10", "")
	f.Add("k", "i", "a\nb", "#", "http://h", "", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
	f.Add("k", "i", "${uuid}", "||", "http://h", "", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
	f.Fuzz(func(t *testing.T, kernel, initrd, a1, a2, base, mac, uuid string) {
		args := []string{a1, a2}
		script, err := Render(netboot.Decision{Kind: netboot.BootKernel, Kernel: kernel, Initrd: initrd, Cmdline: args}, Params{BaseURL: base, MAC: mac, UUID: uuid})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		want := make([]string, len(args))
		for i, a := range args {
			want[i] = strings.ReplaceAll(strings.ReplaceAll(a, "${mac}", macString(t, mac)), "${uuid}", strings.ToLower(uuid))
		}
		checkScript(t, script, want)
	})
}

func macString(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	mac, _, err := checkParams(Params{MAC: s})
	if err != nil {
		t.Fatalf("Render accepted MAC %q that checkParams rejects: %v", s, err)
	}
	return mac
}

func TestRenderKernelProperties(t *testing.T) {
	t.Parallel()
	script, err := Render(netboot.Decision{Kind: netboot.BootKernel, Kernel: "k", Initrd: "a/i.xz", Cmdline: talosArgs}, params)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string(nil), talosArgs...)
	want[2] = "talos.config=http://10.77.0.1:8080/config/abc?mac=52:54:00:77:00:10&uuid=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
	checkScript(t, script, want)
}

// FuzzRenderEnroll: whatever ISO path and base URL are given, an accepted
// enrollment script has the fixed shape, one sanboot line naming exactly
// base/assets/<iso>, and no expansion but the fixed ${platform} guard.
func FuzzRenderEnroll(f *testing.F) {
	f.Add("secureboot/enroll.iso", "http://10.77.0.1:8080")
	f.Add("a b.iso", "http://h")
	f.Add("x.iso\nshell", "http://h/")
	f.Fuzz(func(t *testing.T, iso, base string) {
		script, err := Render(netboot.Decision{Kind: netboot.BootEnroll, ISO: iso}, Params{BaseURL: base})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		lines := strings.Split(strings.TrimSuffix(string(script), "\n"), "\n")
		var sanboot []string
		for i, l := range lines {
			if strings.Contains(l, "$") && l != "iseq ${platform} efi || goto notefi" {
				t.Fatalf("line %d has an expansion: %q", i+1, l)
			}
			if strings.HasPrefix(l, "sanboot ") {
				sanboot = append(sanboot, l)
			}
		}
		want := "sanboot --no-describe " + strings.TrimRight(base, "/") + "/assets/" + iso + " || goto failed"
		if len(sanboot) != 1 || sanboot[0] != want {
			t.Fatalf("sanboot lines %q, want [%q]", sanboot, want)
		}
		if w := strings.Fields(sanboot[0]); len(w) != 6 {
			t.Fatalf("sanboot line splits into %d words: %q", len(w), w)
		}
	})
}
