package secureboot

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"
)

// Role is what a key is for.
type Role string

// Key roles.
const (
	RolePK  Role = "PK"  // Platform Key: owns the machine's SecureBoot, signs KEK updates
	RoleKEK Role = "KEK" // Key Exchange Key: signs db/dbx updates
	RoleDB  Role = "db"  // signature database key: signs the site's UKIs (and iPXE)
	RolePCR Role = "PCR" // Talos PCR 11 policy signing key (not enrolled in firmware)
)

// Key is one private key with its self-signed certificate (none for the PCR
// key, which Talos knows by its public key only).
type Key struct {
	Role    Role
	Signer  *rsa.PrivateKey
	CertDER []byte // nil for RolePCR
}

// Certificate parses the key's certificate.
func (k *Key) Certificate() (*x509.Certificate, error) {
	if k.CertDER == nil {
		return nil, fmt.Errorf("parse %s certificate: the %s key has none", k.Role, k.Role)
	}
	c, err := x509.ParseCertificate(k.CertDER)
	if err != nil {
		return nil, fmt.Errorf("parse %s certificate: %w", k.Role, err)
	}
	return c, nil
}

// Fingerprint is what Talos reports for the key in SecurityState: for
// certificates (the UKI signing key, db) the SHA-256 of the certificate's
// DER; for the PCR key the SHA-256 of its public key's PKIX DER (the PEM
// body of the PCR public key Talos embeds). Lower-case hex.
func (k *Key) Fingerprint() string {
	if k.CertDER != nil {
		return CertFingerprint(k.CertDER)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.Signer.PublicKey)
	if err != nil {
		return ""
	}
	return CertFingerprint(der)
}

// CertFingerprint is the lower-case hex SHA-256 of der.
func CertFingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// CertPEM is the certificate in PEM (public; for sbsign/sbverify and the UI).
func (k *Key) CertPEM() []byte {
	if k.CertDER == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.CertDER})
}

// PublicKeyPEM is the public key in PKIX PEM (what Talos' imager embeds as
// the PCR public key).
func (k *Key) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.Signer.PublicKey)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// PrivateKeyPEM is the private key in PKCS#8 PEM. A secret: keep it in the
// vault, hand it to signing tools through private temporary files only.
func (k *Key) PrivateKeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// KeySet is a site's SecureBoot keys.
type KeySet struct {
	Site  string
	Owner GUID // signature owner of the site's entries in PK/KEK/db
	PK    *Key
	KEK   *Key
	DB    *Key
	PCR   *Key
}

// Options configure GenerateKeys.
type Options struct {
	Bits     int              // RSA modulus: 2048 (default, what every firmware takes) or 3072
	Validity time.Duration    // certificate lifetime; default 20 years (firmware ignores expiry for db checks, but tools do not)
	Now      func() time.Time // default time.Now
	Rand     io.Reader        // default crypto/rand
	Org      string           // subject O; default "Onramp"
}

// GenerateKeys makes a site's PK, KEK, db and PCR keys: RSA, each
// certificate self-signed with SHA-256, subject CN "<site> SecureBoot <role>".
func GenerateKeys(site string, o Options) (*KeySet, error) {
	site = strings.TrimSpace(site)
	if site == "" {
		return nil, errors.New("generate secureboot keys: empty site name")
	}
	if o.Bits == 0 {
		o.Bits = 2048
	}
	if o.Bits != 2048 && o.Bits != 3072 {
		return nil, fmt.Errorf("generate secureboot keys: %d-bit RSA: want 2048 or 3072 (firmware support beyond that varies)", o.Bits)
	}
	if o.Validity == 0 {
		o.Validity = 20 * 365 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Org == "" {
		o.Org = "Onramp"
	}
	ks := &KeySet{Site: site}
	if _, err := io.ReadFull(o.Rand, ks.Owner[:]); err != nil {
		return nil, fmt.Errorf("generate secureboot keys: owner guid: %w", err)
	}
	ks.Owner[7] = ks.Owner[7]&0x0f | 0x40 // version 4 (Data3's high nibble, little-endian)
	ks.Owner[8] = ks.Owner[8]&0x3f | 0x80 // RFC 4122 variant
	now := o.Now().UTC().Truncate(time.Second)
	for _, r := range []Role{RolePK, RoleKEK, RoleDB, RolePCR} {
		k, err := newKey(r, site, o, now)
		if err != nil {
			return nil, fmt.Errorf("generate secureboot keys: %w", err)
		}
		switch r {
		case RolePK:
			ks.PK = k
		case RoleKEK:
			ks.KEK = k
		case RoleDB:
			ks.DB = k
		case RolePCR:
			ks.PCR = k
		}
	}
	return ks, nil
}

func newKey(r Role, site string, o Options, now time.Time) (*Key, error) {
	priv, err := rsa.GenerateKey(o.Rand, o.Bits)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", r, err)
	}
	k := &Key{Role: r, Signer: priv}
	if r == RolePCR {
		return k, nil
	}
	serial, err := rand.Int(o.Rand, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("%s serial: %w", r, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: site + " SecureBoot " + string(r), Organization: []string{o.Org}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	if r == RoleDB {
		// Code signing, as sbsign/Authenticode expect of an image signer.
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	}
	der, err := x509.CreateCertificate(o.Rand, tmpl, tmpl, priv.Public(), crypto.Signer(priv))
	if err != nil {
		return nil, fmt.Errorf("%s certificate: %w", r, err)
	}
	k.CertDER = der
	return k, nil
}

// Fingerprints are the values a site expects its nodes to report (and
// talos/node.Expected takes).
type Fingerprints struct {
	PK  string `json:"pk"`
	KEK string `json:"kek"`
	DB  string `json:"db"`
	// UKISigningKey is the db certificate's: the site's UKIs are signed with it.
	UKISigningKey string `json:"ukiSigningKey"`
	PCRSigningKey string `json:"pcrSigningKey"`
}

// Fingerprints of the set.
func (ks *KeySet) Fingerprints() Fingerprints {
	return Fingerprints{
		PK:            ks.PK.Fingerprint(),
		KEK:           ks.KEK.Fingerprint(),
		DB:            ks.DB.Fingerprint(),
		UKISigningKey: ks.DB.Fingerprint(),
		PCRSigningKey: ks.PCR.Fingerprint(),
	}
}

// Vault entry names of a key set (see Secrets).
const (
	VaultPrefix = "secureboot/"
)

// Secrets returns the set as named values for an encrypted vault
// (store.Vault.PutMany): private keys (PKCS#8 PEM), certificates (PEM), the
// owner GUID and site name.
func (ks *KeySet) Secrets() map[string][]byte {
	m := map[string][]byte{
		VaultPrefix + "site":  []byte(ks.Site),
		VaultPrefix + "owner": []byte(ks.Owner.String()),
	}
	for _, k := range []*Key{ks.PK, ks.KEK, ks.DB, ks.PCR} {
		m[VaultPrefix+string(k.Role)+".key"] = k.PrivateKeyPEM()
		if k.CertDER != nil {
			m[VaultPrefix+string(k.Role)+".crt"] = k.CertPEM()
		}
	}
	return m
}

// SecretNames are the names Secrets returns.
func SecretNames() []string {
	n := []string{VaultPrefix + "site", VaultPrefix + "owner"}
	for _, r := range []Role{RolePK, RoleKEK, RoleDB, RolePCR} {
		n = append(n, VaultPrefix+string(r)+".key")
		if r != RolePCR {
			n = append(n, VaultPrefix+string(r)+".crt")
		}
	}
	return n
}

// KeySetFromSecrets rebuilds a set from what Secrets returned.
func KeySetFromSecrets(m map[string][]byte) (*KeySet, error) {
	owner, err := ParseGUID(string(m[VaultPrefix+"owner"]))
	if err != nil {
		return nil, fmt.Errorf("load secureboot keys: %w", err)
	}
	ks := &KeySet{Site: string(m[VaultPrefix+"site"]), Owner: owner}
	for _, r := range []Role{RolePK, RoleKEK, RoleDB, RolePCR} {
		k, err := parseKey(r, m[VaultPrefix+string(r)+".key"], m[VaultPrefix+string(r)+".crt"])
		if err != nil {
			return nil, fmt.Errorf("load secureboot keys: %w", err)
		}
		switch r {
		case RolePK:
			ks.PK = k
		case RoleKEK:
			ks.KEK = k
		case RoleDB:
			ks.DB = k
		case RolePCR:
			ks.PCR = k
		}
	}
	return ks, nil
}

func parseKey(r Role, keyPEM, certPEM []byte) (*Key, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, fmt.Errorf("%s key: no PEM block", r)
	}
	pk, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", r, err)
	}
	rk, ok := pk.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s key: %T, want RSA", r, pk)
	}
	k := &Key{Role: r, Signer: rk}
	if r == RolePCR {
		return k, nil
	}
	c, _ := pem.Decode(certPEM)
	if c == nil {
		return nil, fmt.Errorf("%s certificate: no PEM block", r)
	}
	cert, err := x509.ParseCertificate(c.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s certificate: %w", r, err)
	}
	if !rk.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s certificate: does not match the key", r)
	}
	k.CertDER = c.Bytes
	return k, nil
}
