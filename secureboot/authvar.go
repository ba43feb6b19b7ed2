package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Variable attributes (UEFI 2.10 section 8.2.1).
const (
	AttrNonVolatile                       = 0x01
	AttrBootserviceAccess                 = 0x02
	AttrRuntimeAccess                     = 0x04
	AttrTimeBasedAuthenticatedWriteAccess = 0x20
	AttrAppendWrite                       = 0x40

	// AttrsSecureBoot are the attributes of PK, KEK, db and dbx.
	AttrsSecureBoot = AttrNonVolatile | AttrBootserviceAccess | AttrRuntimeAccess | AttrTimeBasedAuthenticatedWriteAccess
)

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
)

// efiTime encodes an EFI_TIME as an authenticated variable wants it: UTC,
// with Pad1, Nanosecond, TimeZone, Daylight and Pad2 all zero.
func efiTime(t time.Time) []byte {
	t = t.UTC()
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b[0:], uint16(t.Year()))
	b[2], b[3], b[4], b[5], b[6] = byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())
	return b
}

// SignedPayload is what an EFI_VARIABLE_AUTHENTICATION_2 signs:
// VariableName (UTF-16, no NUL) || VendorGuid || Attributes || TimeStamp ||
// Data (UEFI 2.10 section 8.2.2, step 2). sign-efi-sig-list -o writes the same.
func SignedPayload(name string, vendor GUID, attrs uint32, ts time.Time, data []byte) []byte {
	var b bytes.Buffer
	b.Write(encodeUTF16(name))
	b.Write(vendor[:])
	_ = binary.Write(&b, binary.LittleEndian, attrs)
	b.Write(efiTime(ts))
	b.Write(data)
	return b.Bytes()
}

// SignVariable returns an authenticated variable update: the
// EFI_VARIABLE_AUTHENTICATION_2 header (timestamp, WIN_CERTIFICATE_UEFI_GUID
// with a detached PKCS#7 SignedData, no authenticated attributes, signer
// certificate included — what efitools' sign-efi-sig-list makes) followed by
// data. It is the content of a .auth file for systemd-boot, KeyTool or
// efi-updatevar. signer nil makes an unsigned update (an empty SignedData is
// not valid: only for deleting PK in setup mode; not used here).
func SignVariable(name string, vendor GUID, attrs uint32, ts time.Time, data []byte, signer *Key) ([]byte, error) {
	if signer == nil || signer.CertDER == nil {
		return nil, fmt.Errorf("sign %s: no signing certificate", name)
	}
	cert, err := signer.Certificate()
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", name, err)
	}
	sd, err := signedData(SignedPayload(name, vendor, attrs, ts, data), signer.Signer, cert)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", name, err)
	}
	var b bytes.Buffer
	b.Write(efiTime(ts))
	// WIN_CERTIFICATE_UEFI_GUID: dwLength, wRevision 0x0200,
	// wCertificateType WIN_CERT_TYPE_EFI_GUID (0x0EF1), CertType, CertData.
	_ = binary.Write(&b, binary.LittleEndian, uint32(4+2+2+16+len(sd)))
	_ = binary.Write(&b, binary.LittleEndian, uint16(0x0200))
	_ = binary.Write(&b, binary.LittleEndian, uint16(0x0ef1))
	b.Write(CertTypePKCS7[:])
	b.Write(sd)
	b.Write(data)
	return b.Bytes(), nil
}

// signedData is a PKCS#7 (RFC 2315) SignedData over content, detached, with
// SHA-256/RSA and no authenticated attributes; the bare SignedData, without
// the ContentInfo wrapper, as UEFI wants it in CertData.
func signedData(content []byte, key *rsa.PrivateKey, cert *x509.Certificate) ([]byte, error) {
	digest := sha256.Sum256(content)
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		return nil, err
	}
	algo := func(b *cryptobyte.Builder, oid asn1.ObjectIdentifier) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1NULL()
		})
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // version
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { algo(b, oidSHA256) })
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(cert.Raw) })
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignerInfo
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // IssuerAndSerialNumber
					b.AddBytes(cert.RawIssuer)
					b.AddASN1BigInt(cert.SerialNumber)
				})
				algo(b, oidSHA256)
				algo(b, oidRSAEncryption)
				b.AddASN1OctetString(sig)
			})
		})
	})
	return b.Bytes()
}

// AuthVariable is a parsed EFI_VARIABLE_AUTHENTICATION_2 update.
type AuthVariable struct {
	Time       time.Time
	SignedData []byte // PKCS#7 SignedData (DER, no ContentInfo)
	Data       []byte // the new variable content (signature lists)
}

// ParseAuthVariable splits a .auth file.
func ParseAuthVariable(b []byte) (*AuthVariable, error) {
	if len(b) < 16+24 {
		return nil, fmt.Errorf("parse authenticated variable: %w: %d bytes", ErrMalformed, len(b))
	}
	t := b[:16]
	if t[7] != 0 || binary.LittleEndian.Uint32(t[8:]) != 0 || binary.LittleEndian.Uint16(t[12:]) != 0 || t[14] != 0 || t[15] != 0 {
		return nil, fmt.Errorf("parse authenticated variable: %w: timestamp pad/nanosecond/timezone/daylight not zero", ErrMalformed)
	}
	ts := time.Date(int(binary.LittleEndian.Uint16(t)), time.Month(t[2]), int(t[3]), int(t[4]), int(t[5]), int(t[6]), 0, time.UTC)
	n := int(binary.LittleEndian.Uint32(b[16:]))
	rev, typ := binary.LittleEndian.Uint16(b[20:]), binary.LittleEndian.Uint16(b[22:])
	var ct GUID
	copy(ct[:], b[24:])
	if n < 24 || 16+n > len(b) || rev != 0x0200 || typ != 0x0ef1 || ct != CertTypePKCS7 {
		return nil, fmt.Errorf("parse authenticated variable: %w: WIN_CERTIFICATE length %d revision %#x type %#x cert type %s", ErrMalformed, n, rev, typ, ct)
	}
	return &AuthVariable{Time: ts, SignedData: b[40 : 16+n], Data: b[16+n:]}, nil
}

// ErrBadSignature is wrapped by Verify when the signature does not match.
var ErrBadSignature = errors.New("bad signature")

// Verify checks the update's signature over name/vendor/attrs/time/data with
// the RSA key of cert, as firmware does for a KEK or db update against the
// PK or KEK. It reads only SignedData without authenticated attributes.
func (a *AuthVariable) Verify(name string, vendor GUID, attrs uint32, cert *x509.Certificate) error {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("verify %s: certificate key is %T, want RSA", name, cert.PublicKey)
	}
	sig, err := signerSignature(a.SignedData)
	if err != nil {
		return fmt.Errorf("verify %s: %w", name, err)
	}
	digest := sha256.Sum256(SignedPayload(name, vendor, attrs, a.Time, a.Data))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return fmt.Errorf("verify %s: %w: %v", name, ErrBadSignature, err)
	}
	return nil
}

// signerSignature digs the first SignerInfo's encryptedDigest out of a
// SignedData, refusing authenticated attributes.
func signerSignature(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var sd, infos, info cryptobyte.String
	var version int64
	if !in.ReadASN1(&sd, cbasn1.SEQUENCE) || !sd.ReadASN1Integer(&version) ||
		!sd.SkipASN1(cbasn1.SET) || !sd.SkipASN1(cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("signed data: %w", ErrMalformed)
	}
	sd.SkipOptionalASN1(cbasn1.Tag(0).ContextSpecific().Constructed())
	sd.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific().Constructed())
	if !sd.ReadASN1(&infos, cbasn1.SET) || !infos.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.ReadASN1Integer(&version) || !info.SkipASN1(cbasn1.SEQUENCE) || !info.SkipASN1(cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("signer info: %w", ErrMalformed)
	}
	if info.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, fmt.Errorf("signer info: authenticated attributes not supported")
	}
	var sig cryptobyte.String
	if !info.SkipASN1(cbasn1.SEQUENCE) || !info.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return nil, fmt.Errorf("signer info: %w", ErrMalformed)
	}
	return sig, nil
}
