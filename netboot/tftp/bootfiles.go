package tftp

import (
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The boot file names the DHCP side advertises (DESIGN.md, "Boot paths").
const (
	FileBIOS      = "undionly.kpxe" // BIOS PXE (option 93 = 0)
	FileUEFIx64   = "ipxe.efi"      // UEFI x86-64 PXE (option 93 = 7 or 9)
	FileUEFIarm64 = "snp.efi"       // UEFI arm64 PXE (option 93 = 11)
)

// BootFileNames lists every name BootFiles can map, in a fixed order.
var BootFileNames = []string{FileBIOS, FileUEFIx64, FileUEFIarm64}

// candidate is a file in an iPXE directory that can stand for an advertised
// name, with the PE machine type an EFI binary must have (0 = not EFI).
type candidate struct {
	rel     string
	machine uint16
}

var candidates = map[string][]candidate{
	FileBIOS: {{rel: "undionly.kpxe"}},
	// ipxe.efi carries iPXE's own NIC drivers; snponly.efi drives the NIC
	// through the firmware's SNP and is the fallback.
	FileUEFIx64: {{"ipxe.efi", pe.IMAGE_FILE_MACHINE_AMD64}, {"x86_64-efi/ipxe.efi", pe.IMAGE_FILE_MACHINE_AMD64},
		{"snponly.efi", pe.IMAGE_FILE_MACHINE_AMD64}, {"x86_64-efi/snponly.efi", pe.IMAGE_FILE_MACHINE_AMD64}},
	// Debian's ipxe package has no arm64 build; an arm64 build placed in the
	// directory under one of these names is used.
	FileUEFIarm64: {{"snp.efi", pe.IMAGE_FILE_MACHINE_ARM64}, {"arm64-efi/snp.efi", pe.IMAGE_FILE_MACHINE_ARM64},
		{"arm64/snp.efi", pe.IMAGE_FILE_MACHINE_ARM64}, {"snp-arm64.efi", pe.IMAGE_FILE_MACHINE_ARM64},
		{"arm64-efi/ipxe.efi", pe.IMAGE_FILE_MACHINE_ARM64}, {"ipxe-arm64.efi", pe.IMAGE_FILE_MACHINE_ARM64}},
}

var whatFor = map[string]string{
	FileBIOS:      "BIOS machines",
	FileUEFIx64:   "UEFI x86-64 machines",
	FileUEFIarm64: "UEFI arm64 machines",
}

// BootFiles builds the TFTP (and HTTP /boot/) root from an iPXE directory such
// as Debian's /usr/lib/ipxe, which holds ipxe.efi, snponly.efi and
// undionly.kpxe (and no arm64 build). Each advertised name (FileBIOS,
// FileUEFIx64, FileUEFIarm64) is mapped to the first existing candidate file;
// EFI candidates must be PE images for the right CPU (an x86-64 snponly.efi is
// never served as the arm64 snp.efi). Symlinks in dir are followed (Debian's
// ipxe.efi links to /boot/ipxe.efi): dir is chosen by the operator, not by
// the client, and the client can name only the mapped names.
//
// missing says in plain words which advertised names could not be mapped and
// what that means for the technician. The error is non-nil only if dir cannot
// be read or no name at all could be mapped.
func BootFiles(dir string) (root fs.FS, missing []string, err error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read iPXE directory: %w", err)
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("read iPXE directory: %s is not a directory", dir)
	}
	m := &mapFS{files: map[string]string{}, mod: st.ModTime()}
	for _, name := range BootFileNames {
		var why []string
		for _, c := range candidates[name] {
			p := filepath.Join(dir, filepath.FromSlash(c.rel))
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue
			}
			if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if c.machine != 0 {
				got, err := peMachine(real)
				if err != nil {
					why = append(why, fmt.Sprintf("%s is not an EFI image", c.rel))
					continue
				}
				if got != c.machine {
					why = append(why, fmt.Sprintf("%s is built for another CPU", c.rel))
					continue
				}
			}
			m.files[name] = real
			break
		}
		if _, ok := m.files[name]; !ok {
			msg := fmt.Sprintf("%s is missing: no iPXE build for %s in %s, so %s cannot network boot through PXE",
				name, whatFor[name], dir, whatFor[name])
			if len(why) > 0 {
				msg += fmt.Sprintf(" (%v)", why)
			}
			missing = append(missing, msg)
		}
	}
	if len(m.files) == 0 {
		return nil, missing, errors.New("read iPXE directory: no iPXE binary found in " + dir)
	}
	return m, missing, nil
}

func peMachine(path string) (uint16, error) {
	f, err := pe.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Machine, nil
}

// mapFS serves a fixed set of names, each backed by a real file, so that
// Open returns an *os.File (sendfile over HTTP keeps working).
type mapFS struct {
	files map[string]string // name -> absolute path
	mod   time.Time
}

func (m *mapFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &rootDir{m: m}, nil
	}
	p, ok := m.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return os.Open(p)
}

func (m *mapFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		if !fs.ValidPath(name) {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
		}
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	names := make([]string, 0, len(m.files))
	for n := range m.files {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		fi, err := os.Stat(m.files[n])
		if err != nil {
			return nil, err
		}
		out = append(out, fs.FileInfoToDirEntry(namedInfo{FileInfo: fi, name: n}))
	}
	return out, nil
}

// namedInfo reports the advertised name instead of the backing file's.
type namedInfo struct {
	fs.FileInfo
	name string
}

func (n namedInfo) Name() string { return n.name }

type rootDir struct {
	m   *mapFS
	pos int
}

func (d *rootDir) Stat() (fs.FileInfo, error) { return rootInfo{mod: d.m.mod}, nil }
func (d *rootDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: errors.New("is a directory")}
}
func (d *rootDir) Close() error { return nil }

func (d *rootDir) ReadDir(n int) ([]fs.DirEntry, error) {
	all, err := d.m.ReadDir(".")
	if err != nil {
		return nil, err
	}
	rest := all[d.pos:]
	if n <= 0 {
		d.pos = len(all)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	d.pos += n
	return rest[:n], nil
}

type rootInfo struct{ mod time.Time }

func (rootInfo) Name() string         { return "." }
func (rootInfo) Size() int64          { return 0 }
func (rootInfo) Mode() fs.FileMode    { return fs.ModeDir | 0o555 }
func (r rootInfo) ModTime() time.Time { return r.mod }
func (rootInfo) IsDir() bool          { return true }
func (rootInfo) Sys() any             { return nil }
