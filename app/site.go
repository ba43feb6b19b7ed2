package app

import (
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
// model is persisted in the data directory without secrets (the Omni join
// token stays in memory); the cluster's secrets bundle is generated once per
// site and held in memory only until the encrypted store exists.
type Site struct {
	path string
	bus  *Bus

	mu     sync.Mutex
	site   *talos.Site
	bundle *secrets.Bundle // the cluster's secrets, in memory only
}

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
	// PCR11OnlyExplanation is the text shown beside the "PCR 11 only" choice.
	PCR11OnlyExplanation string `json:"pcr11OnlyExplanation"`
}

func (s *Site) viewLocked() SiteView {
	v := SiteView{Exists: s.site != nil, Site: s.site, Problems: []talos.Problem{}, Secrets: s.bundle != nil,
		PCR11OnlyExplanation: talos.PCR11OnlyExplanation}
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
	s.mu.Lock()
	defer s.mu.Unlock()
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
// once, in memory, and checks that every machine's config generates and
// passes machinery's strict validation. It never returns secret material.
func (s *Site) GenerateSecrets() (SiteView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.site == nil {
		return SiteView{}, errors.New("fill in the site first")
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
