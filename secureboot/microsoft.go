package secureboot

import (
	"crypto/x509"
	_ "embed"
	"fmt"
)

// Microsoft's certificates as Debian's OVMF ships them in
// OVMF_VARS_4M.ms.fd (package ovmf), extracted by ExtractMicrosoft (see
// TestMicrosoftBundled; regenerate with -update):
//
//	KEK: Microsoft Corporation KEK CA 2011
//	db:  Microsoft Windows Production PCA 2011, Microsoft Corporation UEFI CA 2011
//
// The UEFI CA signs third-party boot loaders and, above all, option ROMs.
var (
	//go:embed microsoft/KEK.esl
	microsoftKEK []byte
	//go:embed microsoft/db.esl
	microsoftDB []byte
)

// MicrosoftKEK returns Microsoft's KEK signature lists.
func MicrosoftKEK() ([]SignatureList, error) { return ParseSignatureLists(microsoftKEK) }

// MicrosoftDB returns Microsoft's db signature lists.
func MicrosoftDB() ([]SignatureList, error) { return ParseSignatureLists(microsoftDB) }

// ExtractMicrosoft reads an OVMF variable store and returns the KEK and db
// entries owned by Microsoft (owner 77fa9abd-...), dropping the others
// (Debian's ms.fd also enrolls its own PK/KEK certificate).
func ExtractMicrosoft(fd []byte) (kek, db []SignatureList, err error) {
	vars, err := ParseVarStore(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("extract microsoft keys: %w", err)
	}
	pick := func(name string, vendor GUID) ([]SignatureList, error) {
		v := FindVariable(vars, name, vendor)
		if v == nil {
			return nil, fmt.Errorf("extract microsoft keys: no %s variable", name)
		}
		lists, err := ParseSignatureLists(v.Data)
		if err != nil {
			return nil, fmt.Errorf("extract microsoft keys: %s: %w", name, err)
		}
		var out []SignatureList
		for _, l := range lists {
			var keep []Signature
			for _, s := range l.Signatures {
				if s.Owner == MicrosoftOwner {
					keep = append(keep, s)
				}
			}
			if len(keep) > 0 {
				l.Signatures = keep
				out = append(out, l)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("extract microsoft keys: no Microsoft entry in %s", name)
		}
		return out, nil
	}
	if kek, err = pick("KEK", GlobalVariable); err != nil {
		return nil, nil, err
	}
	if db, err = pick("db", ImageSecurityDatabase); err != nil {
		return nil, nil, err
	}
	return kek, db, nil
}

// Certificates returns the X.509 certificates of lists (other types skipped).
func Certificates(lists []SignatureList) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, l := range lists {
		if l.Type != CertX509 {
			continue
		}
		for _, s := range l.Signatures {
			c, err := x509.ParseCertificate(s.Data)
			if err != nil {
				return nil, fmt.Errorf("parse certificate owned by %s: %w", s.Owner, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}
