package talos

import (
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
)

var (
	update        = flag.Bool("update", false, "rewrite golden files under testdata/golden")
	updateSecrets = flag.Bool("update-secrets", false, "regenerate the test-only secrets bundle (changes every golden file)")
)

// testSecretsFile is a bundle generated for tests only: its keys are public.
const testSecretsFile = "testdata/TEST-ONLY-secrets.yaml"

const testSecretsHeader = "# TEST ONLY. These keys are published in the Onramp repository for golden tests.\n" +
	"# Never use them for a real cluster. Regenerate: go test ./talos -run TestGolden -update-secrets -update\n"

// testClock is the fixed clock of every golden test.
func testClock() secrets.Clock {
	return secrets.NewFixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// testBundle loads the test-only bundle (or regenerates it with -update-secrets).
func testBundle(t testing.TB) *secrets.Bundle {
	t.Helper()

	if *updateSecrets {
		regenerateSecretsOnce(t)
	}

	data, err := os.ReadFile(testSecretsFile)
	if err != nil {
		t.Fatalf("read %s: %v", testSecretsFile, err)
	}

	bundle, err := UnmarshalSecrets(data, testClock())
	if err != nil {
		t.Fatalf("load %s: %v", testSecretsFile, err)
	}

	return bundle
}

var regenerate sync.Once

func regenerateSecretsOnce(t testing.TB) {
	t.Helper()
	regenerate.Do(func() { regenerateSecrets(t) })
}

func regenerateSecrets(t testing.TB) {
	t.Helper()

	bundle, err := NewSecrets(testClock())
	if err != nil {
		t.Fatal(err)
	}

	data, err := MarshalSecrets(bundle)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(testSecretsFile, append([]byte(testSecretsHeader), data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadTestSite loads testdata/site.yaml.
func loadTestSite(t testing.TB) *Site {
	t.Helper()

	site, err := LoadSite(filepath.Join("testdata", "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	return site
}

// testGenerator builds a deterministic generator for site.
func testGenerator(t testing.TB, site *Site, opts ...Option) *Generator {
	t.Helper()

	opts = append([]Option{WithSecrets(testBundle(t)), WithClock(testClock())}, opts...)

	g, err := NewGenerator(site, opts...)
	if err != nil {
		t.Fatalf("NewGenerator: %v", err)
	}

	return g
}
