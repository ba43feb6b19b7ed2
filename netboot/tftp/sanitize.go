package tftp

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxNameLen bounds a requested filename. A read request must fit one 512-byte
// packet with its mode and options, so real firmware never sends more.
const MaxNameLen = 255

// ErrBadName is wrapped by every error from Sanitize.
var ErrBadName = errors.New("bad file name")

// Sanitize turns a filename from a TFTP read request into a path inside the
// served root, or refuses it. The request parser hands the name over exactly
// as the client sent it, so every request goes through here first.
//
//   - A leading '/' is stripped: firmware often asks for "/ipxe.efi".
//   - '\' is a separator: some firmware (and Windows WDS habits) send
//     "boot\ipxe.efi".
//   - Percent-encoding is decoded once ("%2e%2e" is ".."); a '%' left after
//     that (double encoding) is refused.
//   - "." segments and empty segments are dropped; any ".." segment is refused
//     rather than resolved, so a name never walks up, not even inside the root.
//   - NUL, control characters, invalid UTF-8, empty and overlong names are
//     refused.
//
// The result is always an fs.ValidPath that is not ".".
func Sanitize(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrBadName)
	}
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrBadName, MaxNameLen)
	}
	if strings.Contains(name, "%") {
		dec, err := url.PathUnescape(name)
		if err != nil {
			return "", fmt.Errorf("%w: broken percent-encoding", ErrBadName)
		}
		if strings.Contains(dec, "%") {
			return "", fmt.Errorf("%w: percent-encoded twice", ErrBadName)
		}
		name = dec
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not valid UTF-8", ErrBadName)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: contains a control character or NUL", ErrBadName)
		}
	}
	name = strings.ReplaceAll(name, `\`, "/")
	var parts []string
	for seg := range strings.SplitSeq(name, "/") {
		switch seg {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("%w: contains \"..\"", ErrBadName)
		}
		parts = append(parts, seg)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("%w: names no file", ErrBadName)
	}
	clean := strings.Join(parts, "/")
	if !fs.ValidPath(clean) {
		// Unreachable with the rules above; kept as the last line of defence.
		return "", fmt.Errorf("%w: not a valid path", ErrBadName)
	}
	return clean, nil
}
