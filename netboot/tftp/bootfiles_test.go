package tftp

import (
	"bytes"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakePE returns the smallest file debug/pe accepts: a DOS stub pointing at a
// PE signature and a COFF header for machine, then a marker payload.
func fakePE(machine uint16, marker string) []byte {
	b := make([]byte, 0x40)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x40)
	b = append(b, "PE\x00\x00"...)
	coff := make([]byte, 20)
	binary.LittleEndian.PutUint16(coff[0:], machine)
	b = append(b, coff...)
	b = append(b, marker...)
	return append(b, make([]byte, 64)...) // debug/pe reads 96 bytes of DOS header
}

func TestBootFilesMapping(t *testing.T) {
	t.Parallel()
	const amd64, arm64 = 0x8664, 0xaa64
	tests := []struct {
		name        string
		files       map[string][]byte
		want        map[string]string // advertised name -> marker expected inside
		wantMissing []string          // substrings, one per missing report
	}{
		{
			name:        "debian layout",
			files:       map[string][]byte{"ipxe.efi": fakePE(amd64, "IPXE"), "snponly.efi": fakePE(amd64, "SNPONLY"), "undionly.kpxe": []byte("UNDI")},
			want:        map[string]string{"ipxe.efi": "IPXE", "undionly.kpxe": "UNDI"},
			wantMissing: []string{"snp.efi is missing: no iPXE build for UEFI arm64 machines"},
		},
		{
			name:  "snponly fallback and arm64 build",
			files: map[string][]byte{"snponly.efi": fakePE(amd64, "SNPONLY"), "arm64-efi/snp.efi": fakePE(arm64, "ARM"), "undionly.kpxe": []byte("UNDI")},
			want:  map[string]string{"ipxe.efi": "SNPONLY", "snp.efi": "ARM", "undionly.kpxe": "UNDI"},
		},
		{
			name:        "wrong cpu",
			files:       map[string][]byte{"ipxe.efi": fakePE(arm64, "ARMASX64"), "snp.efi": fakePE(amd64, "X64ASARM")},
			wantMissing: []string{"undionly.kpxe is missing", "ipxe.efi is missing", "snp.efi is missing"},
		},
		{
			name:        "not pe",
			files:       map[string][]byte{"ipxe.efi": []byte("not a PE"), "undionly.kpxe": []byte("UNDI")},
			want:        map[string]string{"undionly.kpxe": "UNDI"},
			wantMissing: []string{"ipxe.efi is missing", "snp.efi is missing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, b := range tt.files {
				p := filepath.Join(dir, filepath.FromSlash(name))
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			root, missing, err := BootFiles(dir)
			if len(tt.want) == 0 {
				if err == nil {
					t.Fatal("BootFiles succeeded with no usable file")
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(missing) != len(tt.wantMissing) {
				t.Fatalf("missing = %q, want %d reports like %q", missing, len(tt.wantMissing), tt.wantMissing)
			}
			for i, w := range tt.wantMissing {
				if !strings.Contains(missing[i], w) {
					t.Errorf("missing[%d] = %q, want it to say %q", i, missing[i], w)
				}
			}
			if root == nil {
				return
			}
			var names []string
			for name, marker := range tt.want {
				names = append(names, name)
				b, err := fs.ReadFile(root, name)
				if err != nil || !bytes.Contains(b, []byte(marker)) {
					t.Errorf("%s: %v, content %q lacks %q", name, err, b, marker)
				}
			}
			entries, err := fs.ReadDir(root, ".")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			if diff := cmp.Diff(sorted(names), got); diff != "" {
				t.Errorf("ReadDir (-want +got):\n%s", diff)
			}
			for _, bad := range []string{"../ipxe.efi", "/ipxe.efi", "snponly.efi", "x"} {
				if f, err := root.Open(bad); err == nil {
					f.Close()
					t.Errorf("Open(%q) succeeded", bad)
				}
			}
		})
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestBootFilesDebian uses the ipxe package's real files and serves them
// over a real socket.
func TestBootFilesDebian(t *testing.T) {
	t.Parallel()
	const dir = "/usr/lib/ipxe"
	if _, err := os.Stat(filepath.Join(dir, "undionly.kpxe")); err != nil {
		t.Skip("Debian package ipxe not installed; CI installs it")
	}
	root, missing, err := BootFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("missing: %q", missing)
	for _, name := range []string{FileBIOS, FileUEFIx64} {
		f, err := root.Open(name)
		if err != nil {
			t.Fatalf("%s not served: %v", name, err)
		}
		st, _ := f.Stat()
		if _, ok := f.(io.ReaderFrom); !ok || st.Size() < 50_000 {
			t.Errorf("%s: %T of %d bytes, want an *os.File of an iPXE binary", name, f, st.Size())
		}
		f.Close()
	}
}
