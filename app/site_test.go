package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSiteImportSaveReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := NewSite(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(); v.Exists {
		t.Fatal("new data dir has a site")
	}
	yaml, err := os.ReadFile("../talos/testdata/site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Import(string(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Exists || !v.Ready || len(v.Problems) != 0 {
		t.Fatalf("imported sample site: ready=%v problems=%v", v.Ready, v.Problems)
	}
	// A new service on the same data dir sees the site.
	s2, err := NewSite(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := s2.Get()
	if v2.Site == nil || v2.Site.Cluster != v.Site.Cluster {
		t.Fatalf("reloaded site = %+v", v2.Site)
	}
	// Problems come back with field paths; the site is still saved.
	bad := *v.Site
	bad.Endpoint = "not a url"
	vb, err := s.Save(bad)
	if err != nil {
		t.Fatal(err)
	}
	if vb.Ready || len(vb.Problems) == 0 || !strings.Contains(vb.Problems[0].Path, "endpoint") {
		t.Fatalf("bad endpoint: ready=%v problems=%v", vb.Ready, vb.Problems)
	}
}

func TestSiteSecretsStayInMemory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := NewSite(dir, nil)
	yaml, _ := os.ReadFile("../talos/testdata/site.yaml")
	if _, err := s.Import(string(yaml)); err != nil {
		t.Fatal(err)
	}
	v, err := s.GenerateSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if !v.Secrets {
		t.Fatal("secrets not reported")
	}
	// Nothing in the data dir holds key material.
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, marker := range []string{"PRIVATE KEY", "secretboxEncryptionSecret", "bootstraptoken", "BEGIN"} {
			if strings.Contains(string(b), marker) {
				t.Errorf("%s contains %q: secrets written in plaintext", p, marker)
			}
		}
		return nil
	})
}

func TestCorruptSiteIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, siteFile), []byte("cluster: [unclosed"), 0o600)
	if _, err := NewSite(dir, nil); err == nil || !strings.Contains(err.Error(), "move the file aside") {
		t.Fatalf("err = %v", err)
	}
}
