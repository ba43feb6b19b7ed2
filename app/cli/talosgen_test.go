package cli

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"onramp/talos"
)

func TestTalosGenWritesPrivateFiles(t *testing.T) {
	t.Parallel()

	out := filepath.Join(t.TempDir(), "export")

	var stdout, stderr bytes.Buffer

	err := TalosGen(t.Context(), []string{
		"--cluster", "lab", "--endpoint", "https://10.77.0.10:6443", "--out", out,
		"--installer", "10.77.0.1:5000/siderolabs/installer-secureboot:v1.14.1",
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("TalosGen: %v\nstderr: %s", err, stderr.String())
	}

	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("out dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}

	for _, name := range []string{ControlPlaneFile, WorkerFile, TalosconfigFile} {
		st, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}

		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, st.Mode().Perm())
		}

		if !strings.Contains(stdout.String(), filepath.Join(out, name)) {
			t.Errorf("stdout does not name %s: %q", name, stdout.String())
		}
	}

	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}

	if len(entries) != 3 {
		t.Errorf("out holds %d entries, want 3 (no temporary files left)", len(entries))
	}

	for name, wantType := range map[string]string{ControlPlaneFile: "controlplane", WorkerFile: "worker"} {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}

		cfg, err := configloader.NewFromBytes(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}

		if err := talos.Validate(cfg); err != nil {
			t.Errorf("%s: %v", name, err)
		}

		if cfg.Machine().Type().String() != wantType {
			t.Errorf("%s: type %s", name, cfg.Machine().Type())
		}

		inst := cfg.UnattendedInstallConfig()
		if inst == nil || inst.InstallerImage() != "10.77.0.1:5000/siderolabs/installer-secureboot:v1.14.1" {
			t.Errorf("%s: installer = %v", name, inst)
		} else if !strings.Contains(inst.VolumeSelector().String(), `disk.dev_path == "/dev/sda"`) {
			t.Errorf("%s: disk selector = %s", name, inst.VolumeSelector())
		}
	}

	tc, err := clientconfig.Open(filepath.Join(out, TalosconfigFile))
	if err != nil {
		t.Fatal(err)
	}

	if diff := cmp.Diff([]string{"10.77.0.10"}, tc.Contexts["lab"].Endpoints); diff != "" {
		t.Errorf("talosconfig endpoints (-want +got):\n%s", diff)
	}
}

func TestTalosGenRefusesOverwrite(t *testing.T) {
	t.Parallel()

	out := t.TempDir()
	existing := filepath.Join(out, WorkerFile)

	if err := os.WriteFile(existing, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	args := []string{"--cluster", "lab", "--endpoint", "https://10.77.0.10:6443", "--out", out}

	var stdout, stderr bytes.Buffer

	err := TalosGen(t.Context(), args, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("TalosGen over an existing file = %v, want a refusal naming --force", err)
	}

	if data, _ := os.ReadFile(existing); string(data) != "mine" {
		t.Error("existing file was changed")
	}

	if _, err := os.Stat(filepath.Join(out, ControlPlaneFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused run still wrote controlplane.yaml")
	}

	if err := TalosGen(t.Context(), append(args, "--force"), &stdout, &stderr); err != nil {
		t.Fatalf("TalosGen --force: %v", err)
	}

	st, err := os.Stat(existing)
	if err != nil {
		t.Fatal(err)
	}

	if st.Mode().Perm() != 0o600 {
		t.Errorf("overwritten file mode = %v, want 0600", st.Mode().Perm())
	}

	if data, _ := os.ReadFile(existing); string(data) == "mine" {
		t.Error("--force did not overwrite")
	}
}

func TestTalosGenFromSite(t *testing.T) {
	t.Parallel()

	out := filepath.Join(t.TempDir(), "x")

	var stdout, stderr bytes.Buffer

	err := TalosGen(t.Context(), []string{"--site", filepath.Join("..", "..", "talos", "testdata", "site.yaml"), "--out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("TalosGen --site: %v", err)
	}

	data, err := os.ReadFile(filepath.Join(out, ControlPlaneFile))
	if err != nil {
		t.Fatal(err)
	}

	for _, want := range []string{"clusterName: stmary-lab2", "disk.size >= 100u * GB", "endpoint: 10.77.0.1:8090"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("controlplane.yaml lacks %q", want)
		}
	}
}

func TestTalosGenUsageErrors(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"help", []string{"-h"}, ""},
		{"no out", []string{"--cluster", "a", "--endpoint", "https://x:6443"}, "--out is required"},
		{"no cluster", []string{"--out", "d"}, "--cluster and --endpoint are required"},
		{"bad endpoint", []string{"--cluster", "a", "--endpoint", "x", "--out", "d"}, "endpoint"},
		{"bad version", []string{"--cluster", "a", "--endpoint", "https://x:6443", "--out", "d", "--talos-version", "v1.12.0"}, "talosVersion"},
		{"extra arg", []string{"--out", "d", "junk"}, "unexpected argument"},
		{"missing site", []string{"--site", "/nonexistent/site.yaml", "--out", "d"}, "read site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			var stdout, stderr bytes.Buffer

			err := TalosGen(t.Context(), tc.args, &stdout, &stderr)

			if tc.want == "" {
				if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "onramp talos gen --cluster NAME") {
					t.Errorf("-h: err %v, stderr %q", err, stderr.String())
				}

				return
			}

			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}

			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}
