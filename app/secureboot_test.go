package app

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"onramp/secureboot"
)

// TestSecureBootKeysInVault: keys need an unlocked vault, are generated
// once, survive a restart (lock/unlock of a new process) with the same
// fingerprints, and no private key is ever written in plaintext under the
// data directory.
func TestSecureBootKeysInVault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bus := NewBus()
	site, vault := openSiteAndVault(t, dir, bus)
	sb := NewSecureBoot(dir, "", vault, site, bus)

	st, err := sb.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.VaultUnlocked || st.HasKeys || st.DropMicrosoftWarning == "" {
		t.Errorf("before the vault: %+v", st)
	}
	if _, err := sb.GenerateKeys(); err == nil || !strings.Contains(err.Error(), "vault") {
		t.Fatalf("GenerateKeys without a vault: %v, want a vault error", err)
	}
	if _, err := vault.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	st, err = sb.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	if !st.HasKeys || st.Fingerprints == nil || len(st.Fingerprints.UKISigningKey) != 64 || st.Fingerprints.UKISigningKey != st.Fingerprints.DB {
		t.Fatalf("after GenerateKeys: %+v", st)
	}
	if _, err := sb.GenerateKeys(); err == nil {
		t.Error("GenerateKeys replaced existing keys")
	}

	// The site expects these keys only when told to, and only with a site.
	if st.SiteExpects {
		t.Error("site expects the new keys before ExpectForSite")
	}
	if _, err := sb.ExpectForSite(); err == nil || !strings.Contains(err.Error(), "save the site first") {
		t.Errorf("ExpectForSite without a site: %v", err)
	}
	if _, err := site.Save(sampleSiteWithOmni(t)); err != nil {
		t.Fatal(err)
	}
	if st, err = sb.ExpectForSite(); err != nil || !st.SiteExpects {
		t.Fatalf("ExpectForSite: %v, %+v", err, st)
	}
	if v, _ := site.Get(); v.Site.SecureBoot.UKISigningKeyFingerprint != st.Fingerprints.UKISigningKey || v.Site.SecureBoot.PCRSigningKeyFingerprint != st.Fingerprints.PCRSigningKey {
		t.Errorf("site expects %+v, want the vault keys' %+v", v.Site.SecureBoot, st.Fingerprints)
	}

	// Nothing under the data dir holds a private key in the clear.
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a plaintext private key", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A new process: locked until unlocked, then the same keys.
	vault.close()
	site2, vault2 := openSiteAndVault(t, dir, bus)
	sb2 := NewSecureBoot(dir, "", vault2, site2, bus)
	if st2, _ := sb2.Status(); st2.HasKeys {
		t.Error("keys visible while the vault is locked")
	}
	if _, err := vault2.Unlock(vaultPass); err != nil {
		t.Fatal(err)
	}
	st2, err := sb2.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st2.Fingerprints == nil || *st2.Fingerprints != *st.Fingerprints || st2.Owner != st.Owner {
		t.Errorf("after restart: %+v, want fingerprints %+v", st2.Fingerprints, st.Fingerprints)
	}
}

// TestSecureBootEnrollmentImage builds the image from the vault's keys
// into the netboot assets; its PK.auth carries the vault's PK.
func TestSecureBootEnrollmentImage(t *testing.T) {
	t.Parallel()
	for _, b := range []string{"apt-get", "dpkg", "mkfs.vfat", "mcopy", "xorriso"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (packages dosfstools mtools xorriso): %v", b, err)
		}
	}
	dir := t.TempDir()
	bus := NewBus()
	site, vault := openSiteAndVault(t, dir, bus)
	cache := os.Getenv("ONRAMP_LAB_CACHE")
	if cache == "" {
		cache = filepath.Join("..", "build", "lab-cache")
	}
	sb := NewSecureBoot(dir, cache, vault, site, bus)
	if _, err := sb.BuildEnrollmentImage(EnrollmentRequest{}); err == nil {
		t.Fatal("image built without a vault")
	}
	if _, err := vault.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.BuildEnrollmentImage(EnrollmentRequest{}); err == nil {
		t.Fatal("image built without keys")
	}
	if _, err := sb.GenerateKeys(); err != nil {
		t.Fatal(err)
	}
	st, err := sb.BuildEnrollmentImage(EnrollmentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	img := st.Image
	if img == nil || !img.MicrosoftKept || img.URL != "/assets/secureboot/enroll.iso" || img.Size == 0 || len(img.SHA256) != 64 {
		t.Fatalf("image %+v", img)
	}
	if img.ISO != filepath.Join(dir, "assets", "secureboot", "enroll.iso") {
		t.Errorf("ISO at %s, want under the netboot assets", img.ISO)
	}
	pk, err := secureboot.ReadESPFile(t.Context(), img.ESP, "loader/keys/auto/PK.auth")
	if err != nil {
		t.Fatal(err)
	}
	a, err := secureboot.ParseAuthVariable(pk)
	if err != nil {
		t.Fatal(err)
	}
	lists, _ := secureboot.ParseSignatureLists(a.Data)
	certs, _ := secureboot.Certificates(lists)
	if len(certs) != 1 || secureboot.CertFingerprint(certs[0].Raw) != st.Fingerprints.PK {
		t.Errorf("PK.auth does not carry the vault's PK (%s)", st.Fingerprints.PK)
	}
	db, _ := vault.journal()
	events, err := db.Audit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		if strings.HasPrefix(e.Action, "secureboot.") {
			actions = append(actions, e.Action)
			if e.Action == auditSecureBootImage && !strings.Contains(e.Detail, img.SHA256) {
				t.Errorf("image audit event %q lacks the ISO's SHA-256", e.Detail)
			}
		}
	}
	if strings.Join(actions, ",") != "secureboot.keys,secureboot.image" {
		t.Errorf("audit trail SecureBoot events %v", actions)
	}
	st, err = sb.BuildEnrollmentImage(EnrollmentRequest{DropMicrosoft: true})
	if err != nil || st.Image.MicrosoftKept {
		t.Errorf("DropMicrosoft: %v, image %+v", err, st.Image)
	}
}

func TestSecureBootPlaybooks(t *testing.T) {
	t.Parallel()
	pbs, err := (&SecureBoot{}).Playbooks()
	if err != nil {
		t.Fatal(err)
	}
	var vendors []string
	for _, p := range pbs {
		vendors = append(vendors, p.Vendor)
		if p.Enter == "" || len(p.Steps) < 3 {
			t.Errorf("%s: playbook too thin: %+v", p.Vendor, p)
		}
		if !strings.Contains(strings.ToLower(strings.Join(p.Steps, " ")), "setup mode") {
			t.Errorf("%s: no step puts the machine into setup mode", p.Vendor)
		}
	}
	if got := strings.Join(vendors, ","); got != "Dell,HPE,Lenovo,Supermicro,Other" {
		t.Errorf("vendors %s", got)
	}
}
