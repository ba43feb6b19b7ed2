package secureboot

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// GUID is an EFI_GUID in its on-disk (mixed-endian) byte order.
type GUID [16]byte

// ParseGUID parses the canonical text form 8-4-4-4-12.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || strings.Count(s, "-") != 4 || len(s) != 36 {
		return g, fmt.Errorf("parse guid %q: want 8-4-4-4-12 hex digits", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return g, fmt.Errorf("parse guid %q: %w", s, err)
	}
	// Data1 (u32), Data2 (u16), Data3 (u16) are little-endian; Data4 is bytes.
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String is the canonical text form.
func (g GUID) String() string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8:10], g[10:])
}

// GUIDs of the UEFI specification and EDK2.
var (
	// GlobalVariable is the vendor GUID of PK and KEK.
	GlobalVariable = mustGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	// ImageSecurityDatabase is the vendor GUID of db and dbx.
	ImageSecurityDatabase = mustGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// CertX509 is EFI_CERT_X509_GUID: a DER certificate per signature.
	CertX509 = mustGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// CertSHA256 is EFI_CERT_SHA256_GUID: an image hash per signature.
	CertSHA256 = mustGUID("c1c41626-504c-4092-aca9-41f936934328")
	// CertTypePKCS7 is EFI_CERT_TYPE_PKCS7_GUID, the WIN_CERTIFICATE_UEFI_GUID
	// type of an EFI_VARIABLE_AUTHENTICATION_2.
	CertTypePKCS7 = mustGUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
	// MicrosoftOwner is the signature owner Microsoft's entries carry.
	MicrosoftOwner = mustGUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")
)

// Signature is one EFI_SIGNATURE_DATA: the owner and the data (a DER
// certificate for CertX509, a 32-byte hash for CertSHA256).
type Signature struct {
	Owner GUID
	Data  []byte
}

// SignatureList is one EFI_SIGNATURE_LIST: signatures of one type, all of
// the same size.
type SignatureList struct {
	Type       GUID
	Header     []byte // SignatureHeader, empty for the types in use
	Signatures []Signature
}

const sigListHeaderSize = 16 + 4 + 4 + 4

// ErrMalformed is wrapped by the parsers for input that is not what it claims.
var ErrMalformed = errors.New("malformed")

// MarshalSignatureLists encodes lists back to back, as a signature database
// variable (PK, KEK, db, dbx) holds them.
func MarshalSignatureLists(lists ...SignatureList) ([]byte, error) {
	var b bytes.Buffer
	for i, l := range lists {
		if len(l.Signatures) == 0 {
			return nil, fmt.Errorf("marshal signature list %d: no signatures", i)
		}
		size := 16 + len(l.Signatures[0].Data)
		for _, s := range l.Signatures {
			if 16+len(s.Data) != size {
				return nil, fmt.Errorf("marshal signature list %d: signatures of different sizes", i)
			}
		}
		total := sigListHeaderSize + len(l.Header) + size*len(l.Signatures)
		b.Write(l.Type[:])
		_ = binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(total), uint32(len(l.Header)), uint32(size)})
		b.Write(l.Header)
		for _, s := range l.Signatures {
			b.Write(s.Owner[:])
			b.Write(s.Data)
		}
	}
	return b.Bytes(), nil
}

// ParseSignatureLists decodes a signature database (zero or more lists).
func ParseSignatureLists(b []byte) ([]SignatureList, error) {
	var out []SignatureList
	for off := 0; off < len(b); {
		if len(b)-off < sigListHeaderSize {
			return nil, fmt.Errorf("parse signature list at %d: %w: %d bytes left, header is %d", off, ErrMalformed, len(b)-off, sigListHeaderSize)
		}
		var l SignatureList
		copy(l.Type[:], b[off:])
		total := int(binary.LittleEndian.Uint32(b[off+16:]))
		hdr := int(binary.LittleEndian.Uint32(b[off+20:]))
		size := int(binary.LittleEndian.Uint32(b[off+24:]))
		if total < sigListHeaderSize || total > len(b)-off || hdr > total-sigListHeaderSize || size <= 16 {
			return nil, fmt.Errorf("parse signature list at %d: %w: size %d, header %d, signature size %d", off, ErrMalformed, total, hdr, size)
		}
		body := total - sigListHeaderSize - hdr
		if body%size != 0 || body == 0 {
			return nil, fmt.Errorf("parse signature list at %d: %w: %d bytes of signatures is not a multiple of %d", off, ErrMalformed, body, size)
		}
		p := off + sigListHeaderSize
		l.Header = append([]byte(nil), b[p:p+hdr]...)
		p += hdr
		for ; p < off+total; p += size {
			var s Signature
			copy(s.Owner[:], b[p:])
			s.Data = append([]byte(nil), b[p+16:p+size]...)
			l.Signatures = append(l.Signatures, s)
		}
		out = append(out, l)
		off += total
	}
	return out, nil
}

// X509List is a signature list holding one certificate (DER) owned by owner.
func X509List(owner GUID, certDER []byte) SignatureList {
	return SignatureList{Type: CertX509, Signatures: []Signature{{Owner: owner, Data: certDER}}}
}
