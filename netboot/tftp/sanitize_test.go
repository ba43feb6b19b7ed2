package tftp

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestSanitize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // "" = must be refused
	}{
		{"ipxe.efi", "ipxe.efi"},
		{"/ipxe.efi", "ipxe.efi"},
		{"//ipxe.efi", "ipxe.efi"},
		{`\ipxe.efi`, "ipxe.efi"},
		{`boot\ipxe.efi`, "boot/ipxe.efi"},
		{"./boot/./ipxe.efi", "boot/ipxe.efi"},
		{"boot//ipxe.efi", "boot/ipxe.efi"},
		{"boot/ipxe.efi/", "boot/ipxe.efi"},
		{"%69pxe.efi", "ipxe.efi"},
		{"pxelinux.cfg/01-52-54-00-77-00-10", "pxelinux.cfg/01-52-54-00-77-00-10"},
		{"..file", "..file"},
		{"", ""},
		{"/", ""},
		{".", ""},
		{`\`, ""},
		{"..", ""},
		{"../etc/passwd", ""},
		{"/../etc/passwd", ""},
		{"boot/../../etc/passwd", ""},
		{"boot/../ipxe.efi", ""},
		{`..\..\etc\passwd`, ""},
		{`boot\..\..\x`, ""},
		{"%2e%2e/etc/passwd", ""},
		{"%2E%2E%2Fetc%2Fpasswd", ""},
		{"%2e%2e%5cx", ""},
		{"%252e%252e/x", ""},
		{"%zz", ""},
		{"ipxe.efi\x00.txt", ""},
		{"%00", ""},
		{"a\nb", ""},
		{"a\x7fb", ""},
		{"\xff\xfe", ""},
		{strings.Repeat("a", MaxNameLen+1), ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := Sanitize(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Sanitize(%q) = %q, want refusal", tt.in, got)
				}
				if !errors.Is(err, ErrBadName) {
					t.Fatalf("error %v does not wrap ErrBadName", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Sanitize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzSanitize checks that whatever a client sends, an accepted name is a
// valid fs path that, joined to any root, stays inside it.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"ipxe.efi", "/ipxe.efi", `\..\x`, "%2e%2e/x", "a/../b", "\x00", "..%2f..%2fx", "%25", ".../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Sanitize(in)
		if err != nil {
			if got != "" {
				t.Fatalf("refused name returned %q", got)
			}
			return
		}
		if !fs.ValidPath(got) || got == "." {
			t.Fatalf("Sanitize(%q) = %q, not a valid fs path", in, got)
		}
		if strings.ContainsAny(got, "\\\x00%") {
			t.Fatalf("Sanitize(%q) = %q keeps a backslash, NUL or percent", in, got)
		}
		const root = "/srv/tftp"
		joined := filepath.Join(root, filepath.FromSlash(got))
		rel, err := filepath.Rel(root, joined)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
			t.Fatalf("Sanitize(%q) = %q escapes the root: %q", in, got, joined)
		}
		// Idempotent: a sanitized name is accepted unchanged.
		if again, err := Sanitize(got); err != nil || again != got {
			t.Fatalf("Sanitize(Sanitize(%q)) = %q, %v; want %q", in, again, err, got)
		}
	})
}
