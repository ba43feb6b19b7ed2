package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"onramp/lab/sim/simtest"
	"onramp/talos/node"
)

// mintClient makes a talosconfig whose client certificate has organization org and is
// signed by signer (nil: a self-signed, foreign CA), trusting the site's OS CA.
func mintClient(t *testing.T, site simtest.Site, org string, signer *x509.PEMEncodedCertificateAndKey) []byte {
	t.Helper()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tmpl := &stdx509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "tester", Organization: []string{org}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     stdx509.KeyUsageDigitalSignature | stdx509.KeyUsageCertSign,
		ExtKeyUsage:  []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth},
	}

	parent, parentKey := tmpl, any(key)

	if signer != nil {
		pair, err := tls.X509KeyPair(signer.Crt, signer.Key)
		if err != nil {
			t.Fatal(err)
		}

		if parent, err = stdx509.ParseCertificate(pair.Certificate[0]); err != nil {
			t.Fatal(err)
		}

		parentKey = pair.PrivateKey
	} else {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	}

	der, err := stdx509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}

	keyDER, err := stdx509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	cfg := clientconfig.NewConfig("test", []string{"127.0.0.1"}, site.OSCA.Crt, &x509.PEMEncodedCertificateAndKey{
		Crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	})

	b, err := cfg.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	return b
}

func TestInstalledAuthenticatesAndAuthorizes(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)
	s := startNode(t, t.TempDir(), secureBootOn, tpm)

	m, err := node.Maintenance(t.Context(), s.Addr().String(), fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if err := m.Apply(t.Context(), site.ControlPlane); err != nil {
		t.Fatal(err)
	}

	admin, err := node.Installed(t.Context(), s.Addr().String(), site.Talosconfig, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	if err := admin.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name         string
		talosconfig  []byte
		readErr      string // "" = reads work
		bootstrapErr string
	}{
		{name: "foreign CA", talosconfig: mintClient(t, site, "os:admin", nil), readErr: "code = Unavailable", bootstrapErr: "code = Unavailable"},
		{name: "no role", talosconfig: mintClient(t, site, "acme", site.OSCA), readErr: "no Talos role", bootstrapErr: "requires role os:admin"},
		{name: "reader", talosconfig: mintClient(t, site, "os:reader", site.OSCA), bootstrapErr: "requires role os:admin"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := node.Installed(t.Context(), s.Addr().String(), tt.talosconfig, node.WithRetry(1, 0), node.WithCallTimeout(3*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			_, err = c.Volumes(t.Context())
			if (tt.readErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.readErr)) {
				t.Errorf("Volumes error = %v, want %q", err, tt.readErr)
			}

			_, err = c.Bootstrap(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.bootstrapErr) {
				t.Errorf("Bootstrap error = %v, want %q", err, tt.bootstrapErr)
			}
		})
	}

	// none of the refused calls bootstrapped the node
	res, err := admin.Bootstrap(t.Context())
	if err != nil || res.AlreadyBootstrapped {
		t.Errorf("admin Bootstrap = %+v, %v", res, err)
	}
}
