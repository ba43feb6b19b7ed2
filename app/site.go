package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"onramp/store"
	"onramp/talos"
)

// Site is the visit's first step: the cluster being built here. The site
// model is persisted in the data directory without secrets (site.yaml never
// holds the Omni join token). The cluster's secrets bundle is generated once
// per site; with the vault unlocked it is stored there encrypted (with the
// join token), and loaded back when the vault is unlocked after a restart.
// Without a vault, both stay in memory only, as before, and are lost on
// restart (the Site page warns).
type Site struct {
	path string
	bus  *Bus

	mu     sync.Mutex
	site   *talos.Site
	bundle *secrets.Bundle // the cluster's secrets in memory; nil = none (or locked in the vault)
	// vault is the encrypted store, set once the database is open (nil:
	// no database, secrets in memory only). Lock order: Vault.mu, then
	// Site.mu, then the store's own.
	vault *store.Vault
	// handedOff says when a cluster of that name was handed off and wiped
	// (Handoff.wipedAt); nil: never.
	handedOff func(cluster string) (time.Time, bool)
	persisted bool // bundle is stored in the vault
}

// Names of the site's secrets in the vault.
const (
	secretBundle    = "site/talos-secrets.yaml"
	secretJoinToken = "site/omni-join-token"
)

const siteFile = "site.yaml"

// NewSite loads the saved site, if any. A corrupt file is an error that
// names it; nothing is overwritten.
func NewSite(dataDir string, bus *Bus) (*Site, error) {
	s := &Site{path: filepath.Join(dataDir, siteFile), bus: bus}
	site, err := talos.LoadSite(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("load site: %w (move the file aside to start a new site)", err)
	}
	s.site = site
	return s, nil
}

// SiteView is what the Site step shows: the site, every problem with its
// field path, and whether configs can be generated.
type SiteView struct {
	Exists   bool            `json:"exists"`
	Site     *talos.Site     `json:"site,omitempty"`
	Problems []talos.Problem `json:"problems"`
	Ready    bool            `json:"ready"`   // no problems: configs can be generated
	Secrets  bool            `json:"secrets"` // the cluster secrets exist (in memory)
	// SecretsPersisted: the bundle is stored encrypted in the vault (it
	// survives a restart). False with Secrets true: memory only.
	SecretsPersisted bool `json:"secretsPersisted"`
	// PCR11OnlyExplanation is the text shown beside the "PCR 11 only" choice.
	PCR11OnlyExplanation string `json:"pcr11OnlyExplanation"`
}

func (s *Site) viewLocked() SiteView {
	v := SiteView{Exists: s.site != nil, Site: s.site, Problems: []talos.Problem{}, Secrets: s.bundle != nil,
		SecretsPersisted: s.bundle != nil && s.persisted, PCR11OnlyExplanation: talos.PCR11OnlyExplanation}
	if s.site != nil {
		v.Problems = append(v.Problems, s.site.Problems()...)
		v.Ready = len(v.Problems) == 0
	}
	return v
}

// Get returns the current site.
func (s *Site) Get() (SiteView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked(), nil
}

// Save stores the site even when it has problems (the technician fills it
// in over time); the answer lists them.
func (s *Site) Save(site talos.Site) (SiteView, error) {
	if site.Handoff.Omni != nil { // own copy: the caller's pointer must not alias ours
		o := *site.Handoff.Omni
		site.Handoff.Omni = &o
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.storeJoinTokenLocked(&site); err != nil {
		return SiteView{}, err
	}
	if err := s.persistLocked(&site); err != nil {
		return SiteView{}, err
	}
	return s.viewLocked(), nil
}

// Import parses a site YAML file's content and saves it.
func (s *Site) Import(yaml string) (SiteView, error) {
	site, err := talos.ParseSite([]byte(yaml))
	if err != nil {
		return SiteView{}, fmt.Errorf("import site: %w", err)
	}
	return s.Save(*site)
}

// Export returns the site as YAML (without the Omni join token).
func (s *Site) Export() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.site == nil {
		return "", errors.New("no site yet")
	}
	b, err := withoutSecrets(s.site).Marshal()
	return string(b), err
}

// GenerateSecrets creates the cluster's secrets bundle (CA keys, tokens)
// once and checks that every machine's config generates and passes
// machinery's strict validation. With the vault unlocked, the bundle (and
// the Omni join token) are stored there encrypted; with a locked vault it
// refuses (the vault may hold this site's bundle, and a second one would
// split the cluster); without a vault it keeps them in memory only. It never
// returns secret material.
func (s *Site) GenerateSecrets() (SiteView, error) {
	// A cluster handed off and wiped keeps its name: new secrets under it
	// would make a second cluster the fleet cannot tell apart. (Asked before
	// taking s.mu: the audit trail sits behind the vault's lock.)
	s.mu.Lock()
	name, fresh, handedOff := "", s.bundle == nil, s.handedOff
	if s.site != nil {
		name = s.site.Cluster
	}
	s.mu.Unlock()
	if fresh && name != "" && handedOff != nil {
		if at, ok := handedOff(name); ok {
			return SiteView{}, fmt.Errorf("generate secrets: cluster %q was handed off and its secrets wiped from this device on %s; "+
				"to build another cluster, give it a new cluster name first", name, at.Local().Format("2006-01-02 15:04"))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.site == nil {
		return SiteView{}, errors.New("fill in the site first")
	}
	ctx := context.Background()
	if s.vault != nil && !s.vault.Unlocked() {
		if ok, err := s.vault.Exists(ctx); err != nil {
			return SiteView{}, fmt.Errorf("generate secrets: %w", err)
		} else if ok {
			if held, _ := s.vault.Has(ctx, secretBundle); held {
				return SiteView{}, errors.New("unlock the vault first: it holds this site's cluster secrets")
			}
			return SiteView{}, errors.New("unlock the vault first, so the cluster secrets are stored encrypted")
		}
	}
	start := time.Now()
	bundle := s.bundle
	if bundle == nil {
		b, err := talos.NewSecrets(secrets.NewClock())
		if err != nil {
			return SiteView{}, fmt.Errorf("generate secrets: %w", err)
		}
		bundle = b
	}
	site := *s.site
	gen, err := talos.NewGenerator(&site, talos.WithSecrets(bundle))
	if err != nil {
		return SiteView{}, fmt.Errorf("generate configs: %w", err)
	}
	for _, m := range site.Machines {
		if _, err := gen.NodeConfig(m); err != nil {
			return SiteView{}, fmt.Errorf("generate config for %s: %w", m.Key(), err)
		}
	}
	if s.vault != nil && s.vault.Unlocked() && !s.persisted {
		if err := s.storeBundleLocked(ctx, bundle, "cluster secrets generated"); err != nil {
			return SiteView{}, err
		}
		s.persisted = true
	}
	s.bundle = bundle
	if s.bus != nil {
		s.bus.Publish("site:secrets", map[string]any{"generated": true, "took": time.Since(start).String()})
	}
	return s.viewLocked(), nil
}

func (s *Site) persistLocked(site *talos.Site) error {
	b, err := withoutSecrets(site).Marshal()
	if err != nil {
		return fmt.Errorf("save site: %w", err)
	}
	if err := store.WriteFileAtomic(s.path, b, 0o600); err != nil {
		return fmt.Errorf("save site: %w", err)
	}
	s.site = site
	// A changed site may change the cluster name or endpoints: configs are
	// generated afresh; the secrets bundle stays (it is per site).
	if s.bus != nil {
		s.bus.Publish("site:changed", s.viewLocked())
	}
	return nil
}

// withoutSecrets drops credentials that must not be written in plaintext.
func withoutSecrets(site *talos.Site) *talos.Site {
	c := *site
	if c.Handoff.Omni != nil {
		o := *c.Handoff.Omni
		o.JoinToken = ""
		c.Handoff.Omni = &o
	}
	return &c
}

// storeBundleLocked writes bundle (and the Omni join token, if any) to the
// vault in one transaction.
func (s *Site) storeBundleLocked(ctx context.Context, bundle *secrets.Bundle, why string) error {
	b, err := talos.MarshalSecrets(bundle)
	if err != nil {
		return fmt.Errorf("store secrets: %w", err)
	}
	values := map[string][]byte{secretBundle: b}
	if tok := joinToken(s.site); tok != "" {
		values[secretJoinToken] = []byte(tok)
	}
	if err := s.vault.PutMany(ctx, values, why); err != nil {
		return fmt.Errorf("store secrets: %w", err)
	}
	return nil
}

// storeJoinTokenLocked keeps the vault's copy of the Omni join token in step
// with a site being saved (vault unlocked only; otherwise the token stays
// in memory as before).
func (s *Site) storeJoinTokenLocked(site *talos.Site) error {
	if s.vault == nil || !s.vault.Unlocked() {
		return nil
	}
	tok := joinToken(site)
	if s.site != nil && tok == joinToken(s.site) {
		return nil
	}
	ctx := context.Background()
	var err error
	if tok == "" {
		err = s.vault.Delete(ctx, secretJoinToken, "Omni join token removed from the site")
	} else {
		err = s.vault.Put(ctx, secretJoinToken, []byte(tok), "Omni join token saved")
	}
	if err != nil {
		return fmt.Errorf("save site: %w", err)
	}
	return nil
}

func joinToken(site *talos.Site) string {
	if site == nil || site.Handoff.Omni == nil {
		return ""
	}
	return site.Handoff.Omni.JoinToken
}

// attachVault gives the site the opened vault store (the Vault service
// calls it once the database is open).
func (s *Site) attachVault(v *store.Vault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vault = v
}

// vaultUnlocked is called by the Vault service after Create or Unlock:
// a bundle held by the vault is loaded into memory; one that exists only in
// memory is stored. The Omni join token is handled the same way.
func (s *Site) vaultUnlocked() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vault == nil || !s.vault.Unlocked() {
		return nil
	}
	ctx := context.Background()
	defer s.publishLocked()
	held, err := s.vault.Has(ctx, secretBundle)
	if err != nil {
		return err
	}
	switch {
	case held:
		b, err := s.vault.Get(ctx, secretBundle)
		if err != nil {
			return fmt.Errorf("load secrets: %w", err)
		}
		bundle, err := talos.UnmarshalSecrets(b, nil)
		if err != nil {
			return fmt.Errorf("load secrets from the vault: %w", err)
		}
		if s.bundle != nil && !s.persisted {
			// A bundle made in memory while the vault could not be used:
			// the vault's wins (it is the one that survived), and the
			// other is kept in the vault rather than dropped.
			mem, err := talos.MarshalSecrets(s.bundle)
			if err == nil && !bytes.Equal(mem, b) {
				name := fmt.Sprintf("%s.replaced-%d", secretBundle, time.Now().Unix())
				if err := s.vault.Put(ctx, name, mem, "in-memory cluster secrets replaced by the vault's"); err != nil {
					return fmt.Errorf("keep in-memory secrets: %w", err)
				}
			}
		}
		s.bundle, s.persisted = bundle, true
	case s.bundle != nil:
		if err := s.storeBundleLocked(ctx, s.bundle, "cluster secrets made before the vault, stored"); err != nil {
			return err
		}
		s.persisted = true
	}
	// The join token: one in memory was typed in while the vault was
	// locked or absent (locking drops the stored one from memory), so it is
	// the newest and is stored; otherwise the vault's copy fills the site
	// loaded from site.yaml.
	if tok := joinToken(s.site); tok != "" {
		if err := s.vault.Put(ctx, secretJoinToken, []byte(tok), "Omni join token saved"); err != nil {
			return fmt.Errorf("store Omni join token: %w", err)
		}
		return nil
	}
	tokHeld, err := s.vault.Has(ctx, secretJoinToken)
	if err != nil {
		return err
	}
	if tokHeld && s.site != nil && s.site.Handoff.Omni != nil {
		tok, err := s.vault.Get(ctx, secretJoinToken)
		if err != nil {
			return fmt.Errorf("load Omni join token: %w", err)
		}
		site := *s.site
		o := *site.Handoff.Omni
		o.JoinToken = string(tok)
		site.Handoff.Omni = &o
		s.site = &site
	}
	return nil
}

// vaultLocked drops from memory what the vault holds: the bundle and the
// join token come back with the next unlock. Secrets that exist only in
// memory (never stored) are kept.
func (s *Site) vaultLocked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.persisted {
		s.bundle, s.persisted = nil, false
	}
	if s.vault != nil && joinToken(s.site) != "" {
		if held, _ := s.vault.Has(context.Background(), secretJoinToken); held {
			s.site = withoutSecrets(s.site)
		}
	}
	s.publishLocked()
}

func (s *Site) publishLocked() {
	if s.bus != nil {
		s.bus.Publish("site:changed", s.viewLocked())
	}
}

// secretsLockedInVault reports that the cluster secrets are not in memory
// because the vault holding them is locked (blockers can then say "Unlock
// the vault on the Site step" rather than "Generate the cluster secrets").
func (s *Site) secretsLockedInVault() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bundle != nil || s.vault == nil || s.vault.Unlocked() {
		return false
	}
	held, err := s.vault.Has(context.Background(), secretBundle)
	return err == nil && held
}
