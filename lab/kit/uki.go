package kit

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// UKISpec lists the parts of a unified kernel image.
type UKISpec struct {
	Stub    string // systemd-boot's linuxx64.efi.stub
	Kernel  string // vmlinuz
	Initrd  string // initramfs
	Cmdline string // embedded command line; under SecureBoot it wins over any passed one
	OSRel   string // os-release text for the .osrel section
}

// BuildUKI assembles a UKI with objcopy, adding the sections at the virtual
// addresses systemd-boot 252's stub expects (.osrel 0x20000, .cmdline
// 0x30000, .linux 0x2000000, .initrd 0x3000000), into cacheDir under a name
// derived from a hash of the inputs, and returns its path.
func BuildUKI(ctx context.Context, cacheDir string, spec UKISpec) (string, error) {
	if spec.OSRel == "" {
		spec.OSRel = "NAME=\"Onramp lab guest\"\nID=onramp-lab\nPRETTY_NAME=\"Onramp lab guest\"\n"
	}
	key, err := hashInputs([]string{spec.Cmdline, spec.OSRel}, []string{spec.Stub, spec.Kernel, spec.Initrd})
	if err != nil {
		return "", fmt.Errorf("build uki: %w", err)
	}
	out := filepath.Join(cacheDir, "uki-"+key+".efi")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	work, err := os.MkdirTemp(cacheDir, ".uki-")
	if err != nil {
		return "", fmt.Errorf("build uki: %w", err)
	}
	defer os.RemoveAll(work)
	osrel := filepath.Join(work, "os-release")
	cmdline := filepath.Join(work, "cmdline.txt")
	if err := os.WriteFile(osrel, []byte(spec.OSRel), 0o644); err != nil {
		return "", fmt.Errorf("build uki: %w", err)
	}
	if err := os.WriteFile(cmdline, []byte(strings.TrimSpace(spec.Cmdline)+"\x00"), 0o644); err != nil {
		return "", fmt.Errorf("build uki: %w", err)
	}
	tmp := filepath.Join(work, "uki.efi")
	if _, err := run(ctx, "", "objcopy",
		"--add-section", ".osrel="+osrel, "--change-section-vma", ".osrel=0x20000",
		"--add-section", ".cmdline="+cmdline, "--change-section-vma", ".cmdline=0x30000",
		"--add-section", ".linux="+spec.Kernel, "--change-section-vma", ".linux=0x2000000",
		"--add-section", ".initrd="+spec.Initrd, "--change-section-vma", ".initrd=0x3000000",
		spec.Stub, tmp); err != nil {
		return "", fmt.Errorf("build uki: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("build uki: %w", err)
	}
	return out, nil
}

// SigningKey is a db key: a PEM private key (optionally encrypted) and its
// PEM certificate.
type SigningKey struct {
	Key        string
	Cert       string
	Passphrase string // for an encrypted key; "" for none
}

// Snakeoil is Debian's test key enrolled in OVMF_VARS_4M.snakeoil.fd as PK,
// KEK and db. It is public: anything signed with it is signed for the lab
// only.
var Snakeoil = SigningKey{
	Key:        "/usr/share/ovmf/PkKek-1-snakeoil.key",
	Cert:       "/usr/share/ovmf/PkKek-1-snakeoil.pem",
	Passphrase: "snakeoil",
}

// Sign writes an Authenticode-signed copy of the PE image in to out with
// sbsign. sbsign cannot take a passphrase, so an encrypted key is first
// decrypted with openssl into a private temporary file that is removed
// afterwards.
func Sign(ctx context.Context, key SigningKey, in, out string) error {
	keyFile := key.Key
	if key.Passphrase != "" {
		dir, err := os.MkdirTemp("", "onramp-lab-sign-")
		if err != nil {
			return fmt.Errorf("sign %s: %w", in, err)
		}
		defer os.RemoveAll(dir)
		keyFile = filepath.Join(dir, "key.pem")
		passFile := filepath.Join(dir, "pass")
		if err := os.WriteFile(passFile, []byte(key.Passphrase), 0o600); err != nil {
			return fmt.Errorf("sign %s: %w", in, err)
		}
		if _, err := run(ctx, "", "openssl", "pkey", "-in", key.Key, "-passin", "file:"+passFile, "-out", keyFile); err != nil {
			return fmt.Errorf("sign %s: decrypt key: %w", in, err)
		}
	}
	tmp := out + ".tmp"
	if _, err := run(ctx, "", "sbsign", "--key", keyFile, "--cert", key.Cert, "--output", tmp, in); err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("sign %s: %w", in, err)
	}
	return nil
}

// Verify checks out's signature against cert with sbverify.
func Verify(ctx context.Context, cert, file string) error {
	if _, err := run(ctx, "", "sbverify", "--cert", cert, file); err != nil {
		return fmt.Errorf("verify %s: %w", file, err)
	}
	return nil
}

// copyFile copies src to dst atomically.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomic(dst, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
}
