package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"onramp/lab/kit"
	"onramp/secureboot"
	"onramp/store"
)

// SecureBoot is visit step 4: the site's own SecureBoot keys (generated
// once into the vault, never written in plaintext), their fingerprints (what
// every node must report afterwards), the enrollment image machines boot in
// setup mode, and per-vendor playbooks for getting a server into setup mode.
//
// The image is written under <dataDir>/assets/secureboot/, which the boot
// services serve over HTTP (UEFI HTTP boot of the ISO mounts it as a RAM
// disk). systemd-boot comes from Debian's systemd-boot-efi package in the
// download cache (<dataDir>/cache, as `lab up`), fetched once while online.
type SecureBoot struct {
	dataDir string
	cache   string
	vault   *Vault
	site    *Site
	bus     *Bus
	now     func() time.Time

	mu    sync.Mutex
	image *EnrollmentImage
}

// Where the enrollment image goes, relative to the netboot assets.
const (
	enrollISOAsset = "secureboot/enroll.iso"
	enrollESPAsset = "secureboot/enroll-esp.img"
)

// NewSecureBoot makes the service; cache "" means <dataDir>/cache.
func NewSecureBoot(dataDir, cache string, vault *Vault, site *Site, bus *Bus) *SecureBoot {
	if cache == "" {
		cache = filepath.Join(dataDir, "cache")
	}
	return &SecureBoot{dataDir: dataDir, cache: cache, vault: vault, site: site, bus: bus, now: time.Now}
}

// EnrollmentImage describes the last built image.
type EnrollmentImage struct {
	ISO           string    `json:"iso"`    // path on this laptop (write it to a USB stick as is)
	URL           string    `json:"url"`    // path served by the boot services, for UEFI HTTP boot
	ESP           string    `json:"esp"`    // the bare FAT image
	SHA256        string    `json:"sha256"` // of the ISO
	Size          int64     `json:"size"`   // of the ISO
	MicrosoftKept bool      `json:"microsoftKept"`
	BuiltAt       time.Time `json:"builtAt"`
}

// SecureBootStatus is what the SecureBoot page shows. Bus event
// "secureboot:changed" carries it after every change.
type SecureBootStatus struct {
	// VaultUnlocked: keys can be made or read. Locked or absent: nothing is
	// shown but this.
	VaultUnlocked bool                     `json:"vaultUnlocked"`
	HasKeys       bool                     `json:"hasKeys"`
	Site          string                   `json:"site,omitempty"`
	Owner         string                   `json:"owner,omitempty"` // signature owner GUID of the site's entries
	Fingerprints  *secureboot.Fingerprints `json:"fingerprints,omitempty"`
	Image         *EnrollmentImage         `json:"image,omitempty"`
	// SiteExpects: the site's expected fingerprints (site.yaml secureBoot,
	// what Verify checks on every node) are these keys' UKI and PCR ones.
	SiteExpects bool `json:"siteExpects"`
	// DropMicrosoftWarning is the text to show before building an image
	// without Microsoft's certificates.
	DropMicrosoftWarning string `json:"dropMicrosoftWarning"`
}

// EnrollmentRequest configures BuildEnrollmentImage.
type EnrollmentRequest struct {
	// DropMicrosoft leaves Microsoft's KEK/db certificates out (see
	// secureboot.DropMicrosoftWarning: it can brick servers with option ROMs).
	DropMicrosoft bool `json:"dropMicrosoft"`
}

// Audit actions of the SecureBoot step: fingerprints and image hashes go
// into the hash-chained audit trail (the site report's evidence).
const (
	auditSecureBootKeys  = "secureboot.keys"
	auditSecureBootImage = "secureboot.image"
)

// record appends one event to the audit trail (best effort: the vault's own
// entry already records that keys were stored).
func (s *SecureBoot) record(ctx context.Context, action, subject string, detail any) {
	_ = s.vault.record(ctx, action, subject, detail)
}

var errVaultLocked = errors.New("the vault is locked or not created: unlock it on the Site step first (SecureBoot keys are kept only there)")

// openVault returns the unlocked vault store.
func (s *SecureBoot) openVault() (*store.Vault, error) {
	_, sv := s.vault.journal()
	if sv == nil {
		return nil, errors.New("the vault database cannot be opened (see the vault panel)")
	}
	if !sv.Unlocked() {
		return nil, errVaultLocked
	}
	return sv, nil
}

// loadKeys reads the site's key set from the vault; nil without keys.
func (s *SecureBoot) loadKeys(ctx context.Context, sv *store.Vault) (*secureboot.KeySet, error) {
	held, err := sv.Has(ctx, secureboot.VaultPrefix+"owner")
	if err != nil || !held {
		return nil, err
	}
	m := map[string][]byte{}
	for _, n := range secureboot.SecretNames() {
		b, err := sv.Get(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("read secureboot keys: %w", err)
		}
		m[n] = b
	}
	return secureboot.KeySetFromSecrets(m)
}

func (s *SecureBoot) statusLocked(ctx context.Context) (SecureBootStatus, error) {
	st := SecureBootStatus{DropMicrosoftWarning: secureboot.DropMicrosoftWarning}
	sv, err := s.openVault()
	if err != nil {
		if errors.Is(err, errVaultLocked) {
			return st, nil
		}
		return st, err
	}
	st.VaultUnlocked = true
	ks, err := s.loadKeys(ctx, sv)
	if err != nil {
		return st, err
	}
	if ks != nil {
		fp := ks.Fingerprints()
		st.HasKeys, st.Site, st.Owner, st.Fingerprints = true, ks.Site, ks.Owner.String(), &fp
		st.Image = s.image
		if v, _ := s.site.Get(); v.Site != nil {
			e := v.Site.SecureBoot
			st.SiteExpects = e.UKISigningKeyFingerprint == fp.UKISigningKey && e.PCRSigningKeyFingerprint == fp.PCRSigningKey
		}
	}
	return st, nil
}

// ExpectForSite makes these keys' UKI and PCR signing-key fingerprints the
// ones every node of the site must report (site.yaml secureBoot; Install
// and Verify check them). Only once the site's Talos images are signed with
// these keys: nodes booted from other images would fail verification.
func (s *SecureBoot) ExpectForSite() (SecureBootStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := context.Background()
	sv, err := s.openVault()
	if err != nil {
		return SecureBootStatus{}, fmt.Errorf("expect site fingerprints: %w", err)
	}
	ks, err := s.loadKeys(ctx, sv)
	if err != nil {
		return SecureBootStatus{}, fmt.Errorf("expect site fingerprints: %w", err)
	}
	if ks == nil {
		return SecureBootStatus{}, errors.New("expect site fingerprints: generate the site's keys first")
	}
	v, err := s.site.Get()
	if err != nil {
		return SecureBootStatus{}, err
	}
	if v.Site == nil {
		return SecureBootStatus{}, errors.New("expect site fingerprints: save the site first")
	}
	site := *v.Site
	fp := ks.Fingerprints()
	site.SecureBoot.UKISigningKeyFingerprint, site.SecureBoot.PCRSigningKeyFingerprint = fp.UKISigningKey, fp.PCRSigningKey
	if _, err := s.site.Save(site); err != nil {
		return SecureBootStatus{}, fmt.Errorf("expect site fingerprints: %w", err)
	}
	st, err := s.statusLocked(ctx)
	if err == nil {
		s.changed(st)
	}
	return st, err
}

// Status answers what the page shows.
func (s *SecureBoot) Status() (SecureBootStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked(context.Background())
}

func (s *SecureBoot) changed(st SecureBootStatus) {
	if s.bus != nil {
		s.bus.Publish("secureboot:changed", st)
	}
}

// GenerateKeys makes the site's PK, KEK, db and PCR keys and stores them in
// the vault. It refuses to replace existing keys: machines enrolled with
// them would no longer boot the site's images.
func (s *SecureBoot) GenerateKeys() (SecureBootStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := context.Background()
	sv, err := s.openVault()
	if err != nil {
		return SecureBootStatus{}, fmt.Errorf("generate secureboot keys: %w", err)
	}
	if ks, err := s.loadKeys(ctx, sv); err != nil || ks != nil {
		if err == nil {
			err = errors.New("the site already has SecureBoot keys; machines enrolled with them depend on them")
		}
		return SecureBootStatus{}, fmt.Errorf("generate secureboot keys: %w", err)
	}
	name := "Onramp site"
	if v, _ := s.site.Get(); v.Site != nil && v.Site.Name != "" {
		name = v.Site.Name
	}
	ks, err := secureboot.GenerateKeys(name, secureboot.Options{Now: s.now})
	if err != nil {
		return SecureBootStatus{}, err
	}
	if err := sv.PutMany(ctx, ks.Secrets(), "SecureBoot PK/KEK/db/PCR keys generated"); err != nil {
		return SecureBootStatus{}, fmt.Errorf("generate secureboot keys: store in vault: %w", err)
	}
	s.image = nil
	s.record(ctx, auditSecureBootKeys, ks.Site, ks.Fingerprints())
	st, err := s.statusLocked(ctx)
	if err == nil {
		s.changed(st)
	}
	return st, err
}

// BuildEnrollmentImage builds the ISO (and bare ESP) that enrolls the
// site's keys, into the netboot assets.
func (s *SecureBoot) BuildEnrollmentImage(req EnrollmentRequest) (SecureBootStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sv, err := s.openVault()
	if err != nil {
		return SecureBootStatus{}, fmt.Errorf("build enrollment image: %w", err)
	}
	ks, err := s.loadKeys(ctx, sv)
	if err != nil {
		return SecureBootStatus{}, fmt.Errorf("build enrollment image: %w", err)
	}
	if ks == nil {
		return SecureBootStatus{}, errors.New("build enrollment image: generate the site's keys first")
	}
	enr, err := ks.Enrollment(secureboot.EnrollOptions{DropMicrosoft: req.DropMicrosoft, Time: s.now()})
	if err != nil {
		return SecureBootStatus{}, err
	}
	sdboot, err := kit.FetchSystemdBoot(ctx, s.cache)
	if err != nil {
		return SecureBootStatus{}, fmt.Errorf("build enrollment image: %w", err)
	}
	assets := filepath.Join(s.dataDir, "assets")
	iso, esp := filepath.Join(assets, enrollISOAsset), filepath.Join(assets, enrollESPAsset)
	if err := os.MkdirAll(filepath.Dir(iso), 0o755); err != nil {
		return SecureBootStatus{}, fmt.Errorf("build enrollment image: %w", err)
	}
	if err := secureboot.BuildESP(ctx, enr, sdboot, esp); err != nil {
		return SecureBootStatus{}, err
	}
	if err := secureboot.BuildISO(ctx, esp, iso); err != nil {
		return SecureBootStatus{}, err
	}
	sum, size, err := fileSHA256(iso)
	if err != nil {
		return SecureBootStatus{}, fmt.Errorf("build enrollment image: %w", err)
	}
	s.image = &EnrollmentImage{ISO: iso, ESP: esp, URL: "/assets/" + enrollISOAsset, SHA256: sum, Size: size,
		MicrosoftKept: enr.MicrosoftKept, BuiltAt: enr.Time}
	s.record(ctx, auditSecureBootImage, ks.Site, map[string]any{"sha256": sum, "microsoftKept": enr.MicrosoftKept, "fingerprints": enr.Fingerprints})
	st, err := s.statusLocked(ctx)
	if err == nil {
		s.changed(st)
	}
	return st, err
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Playbook is how to put one vendor's servers into SecureBoot setup mode.
type Playbook struct {
	Vendor string   `json:"vendor"`
	Match  []string `json:"match"` // SMBIOS manufacturer substrings (lower case)
	Enter  string   `json:"enter"` // how to reach firmware setup
	Steps  []string `json:"steps"`
	Notes  string   `json:"notes,omitempty"`
}

// Playbooks returns the per-vendor setup-mode playbooks, generic last.
// Menu names vary by generation; each playbook names the usual path.
func (s *SecureBoot) Playbooks() ([]Playbook, error) { return playbooks(), nil }

func playbooks() []Playbook {
	after := "Save and exit. Boot the enrollment image (UEFI HTTP boot from Onramp, or the ISO on a USB stick): systemd-boot enrolls the keys and restarts. Then continue with Discover: the machine must show SecureBoot on."
	return []Playbook{
		{Vendor: "Dell", Match: []string{"dell"}, Enter: "F2 at boot (System Setup), or iDRAC virtual console",
			Steps: []string{
				"System BIOS → Boot Settings: Boot Mode = UEFI.",
				"System BIOS → System Security: Secure Boot = Enabled, Secure Boot Policy = Custom.",
				"Secure Boot Custom Policy Settings → Platform Key (PK) → Delete Entry (or \"Delete All Policy Entries\"): the system is now in setup mode.",
				after,
			},
			Notes: "Do not choose \"Standard\" policy afterwards: it restores Dell's factory keys and removes the site's."},
		{Vendor: "HPE", Match: []string{"hpe", "hewlett"}, Enter: "F9 at boot (System Utilities), or iLO remote console",
			Steps: []string{
				"System Configuration → BIOS/Platform Configuration (RBSU) → Boot Options: Boot Mode = UEFI Mode.",
				"Server Security → Secure Boot Settings: Secure Boot Enforcement = Enabled.",
				"Secure Boot Settings → Advanced Secure Boot Options → Platform Key (PK) → Delete Entry (or \"Delete all keys\"): the system is now in setup mode.",
				after,
			},
			Notes: "\"Reset all keys to platform defaults\" brings HPE's keys back: do not use it after enrollment."},
		{Vendor: "Lenovo", Match: []string{"lenovo"}, Enter: "F1 at boot (System Setup), or XClarity Controller remote console",
			Steps: []string{
				"System Settings → Security → Secure Boot Configuration: Secure Boot Setting = Enabled.",
				"Secure Boot Mode = Custom Mode.",
				"Key Management → \"Reset to Setup Mode\" (or \"Delete All Keys\"): the system is now in setup mode.",
				after,
			}},
		{Vendor: "Supermicro", Match: []string{"supermicro"}, Enter: "Del at boot (BIOS setup), or BMC iKVM",
			Steps: []string{
				"Boot: Boot Mode Select = UEFI.",
				"Security → Secure Boot: Secure Boot = Enabled, Secure Boot Mode = Custom.",
				"Key Management → \"Reset To Setup Mode\" (answer Yes to delete all Secure Boot variables): the system is now in setup mode.",
				after,
			},
			Notes: "Older boards show \"Delete all Secure Boot variables\" instead; \"Restore Factory Keys\" undoes the site's enrollment."},
		{Vendor: "Other", Match: nil, Enter: "the setup key shown at boot (often F2, F10, Del or Esc)",
			Steps: []string{
				"Switch to UEFI boot; turn CSM/Legacy boot off.",
				"Find Secure Boot (Security or Boot menu): set it Enabled and the mode Custom (or User/Expert).",
				"Clear the keys: \"Reset to Setup Mode\", \"Delete all keys\" or delete the Platform Key (PK). Setup mode = no PK.",
				after,
			},
			Notes: "Never pick \"Restore factory/default keys\" after enrollment. If the firmware has no way to clear the PK, it cannot be enrolled with the site's keys."},
	}
}
