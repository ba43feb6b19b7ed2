package secureboot

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// Variable is one live variable of an EDK2 variable store.
type Variable struct {
	Name       string
	Vendor     GUID
	Attributes uint32
	Data       []byte
}

// EDK2 variable store layout (MdePkg PiFirmwareVolume.h and MdeModulePkg
// VariableFormat.h, all packed little-endian):
//
//	EFI_FIRMWARE_VOLUME_HEADER  "_FVH" at 40, HeaderLength (u16) at 48
//	VARIABLE_STORE_HEADER       Signature GUID, Size u32, Format u8, State u8, 6 reserved
//	AUTHENTICATED_VARIABLE_HEADER, name (UTF-16, NUL-terminated), data; 4-byte aligned
const (
	fvSignatureOffset  = 40
	fvHeaderLenOffset  = 48
	varStoreHeaderSize = 28
	authVarHeaderSize  = 60
	varStartID         = 0x55aa
	varAdded           = 0x3f // VAR_ADDED with no deletion bits cleared
	varInDeletedTrans  = 0x3e // VAR_ADDED & VAR_IN_DELETED_TRANSITION: still live until its replacement lands
)

// authenticatedVariableStore is gEfiAuthenticatedVariableGuid, the
// signature of a store holding AUTHENTICATED_VARIABLE_HEADERs.
var authenticatedVariableStore = mustGUID("aaf32c78-947b-439a-a180-2e144ec37792")

// ParseVarStore reads the live variables of an OVMF/EDK2 variable store
// image (OVMF_VARS*.fd). A variable written several times appears once, with
// its last value.
func ParseVarStore(fd []byte) ([]Variable, error) {
	if len(fd) < fvHeaderLenOffset+2 || string(fd[fvSignatureOffset:fvSignatureOffset+4]) != "_FVH" {
		return nil, fmt.Errorf("parse variable store: %w: no firmware volume header", ErrMalformed)
	}
	off := int(binary.LittleEndian.Uint16(fd[fvHeaderLenOffset:]))
	if off+varStoreHeaderSize > len(fd) {
		return nil, fmt.Errorf("parse variable store: %w: header length %d", ErrMalformed, off)
	}
	var sig GUID
	copy(sig[:], fd[off:])
	if sig != authenticatedVariableStore {
		return nil, fmt.Errorf("parse variable store: %w: store signature %s is not the authenticated variable format", ErrMalformed, sig)
	}
	size := int(binary.LittleEndian.Uint32(fd[off+16:]))
	end := off + size
	if size < varStoreHeaderSize || end > len(fd) {
		return nil, fmt.Errorf("parse variable store: %w: store size %d", ErrMalformed, size)
	}
	type key struct {
		name   string
		vendor GUID
	}
	index := map[key]int{}
	var out []Variable
	p := align4(off + varStoreHeaderSize)
	for p+authVarHeaderSize <= end && binary.LittleEndian.Uint16(fd[p:]) == varStartID {
		state := fd[p+2]
		attrs := binary.LittleEndian.Uint32(fd[p+4:])
		nameSize := int(binary.LittleEndian.Uint32(fd[p+36:]))
		dataSize := int(binary.LittleEndian.Uint32(fd[p+40:]))
		var vendor GUID
		copy(vendor[:], fd[p+44:])
		n := p + authVarHeaderSize
		if nameSize < 0 || dataSize < 0 || nameSize%2 != 0 || n+nameSize+dataSize > end || n+nameSize+dataSize < n {
			return nil, fmt.Errorf("parse variable store at %#x: %w: name %d, data %d bytes", p, ErrMalformed, nameSize, dataSize)
		}
		if state == varAdded || state == varInDeletedTrans {
			v := Variable{
				Name:       decodeUTF16Z(fd[n : n+nameSize]),
				Vendor:     vendor,
				Attributes: attrs,
				Data:       append([]byte(nil), fd[n+nameSize:n+nameSize+dataSize]...),
			}
			k := key{v.Name, v.Vendor}
			if i, ok := index[k]; ok {
				out[i] = v
			} else {
				index[k] = len(out)
				out = append(out, v)
			}
		}
		p = align4(n + nameSize + dataSize)
	}
	return out, nil
}

// FindVariable returns the variable name of vendor, or nil.
func FindVariable(vars []Variable, name string, vendor GUID) *Variable {
	for i := range vars {
		if vars[i].Name == name && vars[i].Vendor == vendor {
			return &vars[i]
		}
	}
	return nil
}

func align4(n int) int { return (n + 3) &^ 3 }

func decodeUTF16Z(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func encodeUTF16(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}
