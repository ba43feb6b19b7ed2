// Package handoff writes and reads the encrypted handoff bundle (DESIGN step
// 7): what a fleet manager needs to take over a cluster built on site, in one
// file that is useless to whoever finds it on the technician's laptop.
//
// A bundle is an age file (https://age-encryption.org/v1; C2SP age spec)
// whose plaintext is a gzip-compressed (RFC 1952) ustar archive (POSIX.1-1988)
// of flat files:
//
//	manifest.json   format, cluster, creation time, size and SHA-256 of every other file
//	talosconfig     admin client certificate for the Talos API
//	kubeconfig      admin kubeconfig (when it was fetched)
//	secrets.yaml    the Talos secrets bundle (talosctl gen secrets format)
//	inventory.json  every machine of the site
//	report.json, report.html  the site report (step 8)
//
// The archive is deterministic: the same inputs give the same bytes (sorted
// names, one fixed time, no owner names, mode 0600, gzip without a name or a
// time), so two exports of the same cluster can be compared by the hash of
// their plaintext. The age layer is not deterministic (fresh file key).
//
// Recipients are age X25519 public keys ("age1..."), SSH public keys
// ("ssh-ed25519 ...", "ssh-rsa ...", filippo.io/age/agessh), or one
// passphrase (scrypt; age allows no other recipient beside it). The archive
// is streamed straight into the age writer and the ciphertext into a
// temporary file that is renamed into place: the plaintext never touches a
// disk.
//
// age encrypts and authenticates against corruption, not against a forger
// who knows the recipient's public key: anyone can make a bundle for a
// public key. The manifest's hashes catch damage and mix-ups; the bundle's
// SHA-256, shown to the technician and written to the site's audit trail,
// ties a received file to the visit.
package handoff

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/agessh"

	"onramp/store"
)

// Format is the manifest's format tag.
const Format = "onramp-handoff/v1"

// ManifestName is the manifest's name in the archive (always the first entry).
const ManifestName = "manifest.json"

// Limits of what Open reads: a bundle is a few hundred KiB.
const (
	MaxFiles     = 64
	MaxFileSize  = 16 << 20
	MaxTotalSize = 64 << 20
)

// DefaultScryptWorkFactor is log2(N) for a passphrase bundle (age's default).
const DefaultScryptWorkFactor = 18

var (
	// ErrNoRecipient: Seal without a recipient or a passphrase.
	ErrNoRecipient = errors.New("no recipient: enter the fleet manager's public key or a passphrase")
	// ErrBadRecipient: a recipient line is not a public key age can use.
	ErrBadRecipient = errors.New("not a usable public key")
	// ErrWrongIdentity: none of the given keys (or the passphrase) opens the bundle.
	ErrWrongIdentity = errors.New("this key does not open the bundle: it was encrypted to someone else")
	// ErrCorrupt: the bundle is damaged, truncated or not a handoff bundle.
	ErrCorrupt = errors.New("the bundle is damaged or incomplete")
	// ErrBadFile: a file given to Seal has a name or size the format refuses.
	ErrBadFile = errors.New("bad bundle file")
)

// File is one file of the bundle.
type File struct {
	Name string
	Data []byte
}

// Entry is one file in the manifest.
type Entry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest describes a bundle. Files is filled in by Seal.
type Manifest struct {
	Format    string    `json:"format"`
	Site      string    `json:"site,omitempty"`
	Cluster   string    `json:"cluster"`
	ClusterID string    `json:"clusterId"`
	Created   time.Time `json:"created"`
	Onramp    string    `json:"onramp,omitempty"`
	Files     []Entry   `json:"files"`
}

// Recipient is a parsed public key with the text it came from.
type Recipient struct {
	age.Recipient
	// Text is the public key as entered, trimmed (the SSH comment dropped).
	Text string
	// Kind is "age-x25519", "ssh-ed25519" or "ssh-rsa".
	Kind string
}

// ParseRecipient parses one public key. Its errors never quote the input
// beyond its type word (a pasted private key must not end up in a log).
func ParseRecipient(s string) (Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Recipient{}, fmt.Errorf("%w: it is empty", ErrBadRecipient)
	case strings.HasPrefix(s, "AGE-SECRET-KEY-"), strings.Contains(s, "PRIVATE KEY"):
		return Recipient{}, fmt.Errorf("%w: this is a private key; enter the public key (age1... or ssh-...)", ErrBadRecipient)
	case strings.HasPrefix(s, "age1pq1"):
		return Recipient{}, fmt.Errorf("%w: post-quantum age keys are not supported by the fleet tools yet; use an age1... X25519 key", ErrBadRecipient)
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return Recipient{}, fmt.Errorf("%w: the age key is malformed (check it was copied whole)", ErrBadRecipient)
		}
		return Recipient{Recipient: r, Text: r.String(), Kind: "age-x25519"}, nil
	case strings.HasPrefix(s, "ssh-ed25519 "), strings.HasPrefix(s, "ssh-rsa "):
		f := strings.Fields(s)
		text := f[0] + " " + f[1]
		r, err := agessh.ParseRecipient(text)
		if err != nil {
			return Recipient{}, fmt.Errorf("%w: the %s key is malformed or too weak (check it was copied whole)", ErrBadRecipient, f[0])
		}
		return Recipient{Recipient: r, Text: text, Kind: f[0]}, nil
	}
	word, _, _ := strings.Cut(s, " ")
	if len(word) > 24 {
		word = word[:24] + "..."
	}
	return Recipient{}, fmt.Errorf("%w: %q is not an age1... or ssh-ed25519/ssh-rsa public key", ErrBadRecipient, word)
}

// ParseRecipients parses public keys, one per entry (blank entries and
// "#" comments skipped; an entry may hold several lines). Duplicates are
// dropped. Errors name the line.
func ParseRecipients(entries []string) ([]Recipient, error) {
	var out []Recipient
	seen := map[string]bool{}
	n := 0
	for _, e := range entries {
		for line := range strings.Lines(e) {
			n++
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			r, err := ParseRecipient(line)
			if err != nil {
				return nil, fmt.Errorf("recipient %d: %w", n, err)
			}
			if !seen[r.Text] {
				seen[r.Text] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Options say who can open the bundle: Recipients, or a Passphrase.
type Options struct {
	Recipients []Recipient
	Passphrase string
	// ScryptWorkFactor for a passphrase; 0 = DefaultScryptWorkFactor.
	ScryptWorkFactor int
}

func (o Options) ageRecipients() ([]age.Recipient, error) {
	switch {
	case o.Passphrase != "" && len(o.Recipients) > 0:
		return nil, errors.New("use public keys or a passphrase, not both: age allows a passphrase only on its own")
	case o.Passphrase != "":
		r, err := age.NewScryptRecipient(o.Passphrase)
		if err != nil {
			return nil, err
		}
		wf := o.ScryptWorkFactor
		if wf == 0 {
			wf = DefaultScryptWorkFactor
		}
		r.SetWorkFactor(wf)
		return []age.Recipient{r}, nil
	case len(o.Recipients) == 0:
		return nil, ErrNoRecipient
	}
	out := make([]age.Recipient, 0, len(o.Recipients))
	for _, r := range o.Recipients {
		out = append(out, r.Recipient)
	}
	return out, nil
}

func validName(name string) bool {
	if name == "" || len(name) > 100 || name == ManifestName || name == "." || name == ".." {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return !strings.HasPrefix(name, ".")
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// WriteArchive writes the deterministic tar.gz of files with m's manifest
// (Files filled in) first, and returns that manifest.
func WriteArchive(w io.Writer, m Manifest, files []File) (Manifest, error) {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	m.Format = Format
	m.Created = m.Created.UTC().Truncate(time.Second)
	m.Files = make([]Entry, 0, len(files))
	for k, f := range files {
		switch {
		case !validName(f.Name):
			return Manifest{}, fmt.Errorf("%w: name %q", ErrBadFile, f.Name)
		case k > 0 && files[k-1].Name == f.Name:
			return Manifest{}, fmt.Errorf("%w: %s twice", ErrBadFile, f.Name)
		case len(f.Data) > MaxFileSize:
			return Manifest{}, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadFile, f.Name, MaxFileSize)
		}
		m.Files = append(m.Files, Entry{Name: f.Name, Size: int64(len(f.Data)), SHA256: sum(f.Data)})
	}
	if len(files)+1 > MaxFiles {
		return Manifest{}, fmt.Errorf("%w: more than %d files", ErrBadFile, MaxFiles)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("write manifest: %w", err)
	}
	mb = append(mb, '\n')

	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return Manifest{}, err
	}
	tw := tar.NewWriter(zw)
	put := func(name string, data []byte) error {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(data)),
			ModTime: m.Created, Format: tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	if err := put(ManifestName, mb); err != nil {
		return Manifest{}, err
	}
	for _, f := range files {
		if err := put(f.Name, f.Data); err != nil {
			return Manifest{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("write archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("write archive: %w", err)
	}
	return m, nil
}

// Seal streams the archive of files through age to w.
func Seal(w io.Writer, opts Options, m Manifest, files []File) (Manifest, error) {
	rs, err := opts.ageRecipients()
	if err != nil {
		return Manifest{}, fmt.Errorf("seal bundle: %w", err)
	}
	aw, err := age.Encrypt(w, rs...)
	if err != nil {
		return Manifest{}, fmt.Errorf("seal bundle: %w", err)
	}
	out, err := WriteArchive(aw, m, files)
	if err != nil {
		return Manifest{}, fmt.Errorf("seal bundle: %w", err)
	}
	if err := aw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("seal bundle: %w", err)
	}
	return out, nil
}

// Sealed is a bundle written to a file.
type Sealed struct {
	Path     string   `json:"path"`
	Size     int64    `json:"size"`
	SHA256   string   `json:"sha256"` // of the encrypted file
	Manifest Manifest `json:"manifest"`
}

// WriteFile seals the bundle into path (mode 0600), atomically: a
// temporary file in the same directory, synced, then renamed; on failure
// nothing is left behind. Only ciphertext is ever written.
func WriteFile(path string, opts Options, m Manifest, files []File) (Sealed, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Sealed{}, fmt.Errorf("write bundle: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return Sealed{}, fmt.Errorf("write bundle: %w", err)
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	out, err := Seal(cw, opts, m, files)
	if err != nil {
		return Sealed{}, err
	}
	if err := tmp.Sync(); err != nil {
		return Sealed{}, fmt.Errorf("write bundle: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Sealed{}, fmt.Errorf("write bundle: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Sealed{}, fmt.Errorf("write bundle: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return Sealed{Path: path, Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil)), Manifest: out}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ParseIdentities reads the receiving side's key file: an age identity
// file (AGE-SECRET-KEY-1... lines) or an unencrypted OpenSSH/PEM
// ed25519 or RSA private key. Errors never quote the file.
func ParseIdentities(data []byte) ([]age.Identity, error) {
	text := string(data)
	if strings.Contains(text, "PRIVATE KEY-----") {
		id, err := agessh.ParseIdentity(data)
		if err != nil {
			if strings.Contains(err.Error(), "passphrase") {
				return nil, errors.New("read identity: the SSH key is protected with a passphrase: decrypt a copy with ssh-keygen -p first")
			}
			return nil, errors.New("read identity: not an ed25519 or RSA SSH private key")
		}
		return []age.Identity{id}, nil
	}
	ids, err := age.ParseIdentities(strings.NewReader(text))
	if err != nil {
		return nil, errors.New("read identity: not an age identity file (AGE-SECRET-KEY-1...) or an SSH private key")
	}
	return ids, nil
}

// PassphraseIdentity opens a passphrase bundle; the work factor a bundle may
// ask for is capped (a hostile file must not make us spin for hours).
func PassphraseIdentity(passphrase string) (age.Identity, error) {
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	id.SetMaxWorkFactor(22)
	return id, nil
}

// Opened is a decrypted, checked bundle.
type Opened struct {
	Manifest Manifest
	Files    []File // in manifest order, without the manifest
}

// File returns the named file's content.
func (o *Opened) File(name string) ([]byte, bool) {
	for _, f := range o.Files {
		if f.Name == name {
			return f.Data, true
		}
	}
	return nil, false
}

// Open decrypts r with ids and checks the archive against its manifest:
// the manifest first, every file listed exactly once with its size and
// SHA-256, nothing unlisted, nothing that escapes a directory.
func Open(r io.Reader, ids ...age.Identity) (*Opened, error) {
	pr, err := age.Decrypt(r, ids...)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) {
			return nil, fmt.Errorf("open bundle: %w", ErrWrongIdentity)
		}
		return nil, fmt.Errorf("open bundle: %w (not an age file, or its header is cut: %v)", ErrCorrupt, err)
	}
	zr, err := gzip.NewReader(pr)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w (%v)", ErrCorrupt, err)
	}
	tr := tar.NewReader(zr)
	var (
		o     = &Opened{}
		total int64
		seen  = map[string]bool{}
	)
	for k := 0; ; k++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("open bundle: %w (%v)", ErrCorrupt, err)
		}
		if k >= MaxFiles {
			return nil, fmt.Errorf("open bundle: %w: more than %d files", ErrCorrupt, MaxFiles)
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size < 0 || hdr.Size > MaxFileSize || (hdr.Name != ManifestName && !validName(hdr.Name)) || seen[hdr.Name] {
			return nil, fmt.Errorf("open bundle: %w: unexpected entry %q", ErrCorrupt, hdr.Name)
		}
		seen[hdr.Name] = true
		if total += hdr.Size; total > MaxTotalSize {
			return nil, fmt.Errorf("open bundle: %w: larger than %d bytes", ErrCorrupt, MaxTotalSize)
		}
		data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err != nil || int64(len(data)) != hdr.Size {
			return nil, fmt.Errorf("open bundle: %w (%s cut short)", ErrCorrupt, hdr.Name)
		}
		if k == 0 {
			if hdr.Name != ManifestName {
				return nil, fmt.Errorf("open bundle: %w: the manifest is not first", ErrCorrupt)
			}
			if err := json.Unmarshal(data, &o.Manifest); err != nil || o.Manifest.Format != Format {
				return nil, fmt.Errorf("open bundle: %w: not an %s manifest", ErrCorrupt, Format)
			}
			continue
		}
		if hdr.Name == ManifestName {
			return nil, fmt.Errorf("open bundle: %w: two manifests", ErrCorrupt)
		}
		o.Files = append(o.Files, File{Name: hdr.Name, Data: data})
	}
	// Read to the end of the age stream: a truncated or altered tail fails here.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, fmt.Errorf("open bundle: %w (%v)", ErrCorrupt, err)
	}
	if _, err := io.Copy(io.Discard, pr); err != nil {
		return nil, fmt.Errorf("open bundle: %w (%v)", ErrCorrupt, err)
	}
	if o.Manifest.Format == "" {
		return nil, fmt.Errorf("open bundle: %w: no manifest", ErrCorrupt)
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	return o, nil
}

func (o *Opened) check() error {
	if len(o.Manifest.Files) != len(o.Files) {
		return fmt.Errorf("%w: the manifest lists %d files, the archive holds %d", ErrCorrupt, len(o.Manifest.Files), len(o.Files))
	}
	for k, e := range o.Manifest.Files {
		f := o.Files[k]
		switch {
		case f.Name != e.Name:
			return fmt.Errorf("%w: %s is not where the manifest lists %s", ErrCorrupt, f.Name, e.Name)
		case int64(len(f.Data)) != e.Size:
			return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, f.Name, len(f.Data), e.Size)
		case sum(f.Data) != e.SHA256:
			return fmt.Errorf("%w: %s does not match its SHA-256 in the manifest", ErrCorrupt, f.Name)
		}
	}
	return nil
}

// Extract writes the bundle's files and manifest into dir (created 0700;
// it must be empty or not exist), each 0600. It refuses to replace files.
func (o *Opened) Extract(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("extract bundle: %s is not empty", dir)
	}
	mb, err := json.MarshalIndent(o.Manifest, "", "  ")
	if err != nil {
		return fmt.Errorf("extract bundle: %w", err)
	}
	all := append([]File{{Name: ManifestName, Data: append(mb, '\n')}}, o.Files...)
	for _, f := range all {
		if f.Name != ManifestName && !validName(f.Name) {
			return fmt.Errorf("extract bundle: %w: name %q", ErrBadFile, f.Name)
		}
		if err := store.WriteFileAtomic(filepath.Join(dir, f.Name), f.Data, 0o600); err != nil {
			return fmt.Errorf("extract bundle: %w", err)
		}
	}
	return nil
}

// Hash returns the SHA-256 (hex) of data, as the manifest writes it.
func Hash(data []byte) string { return sum(data) }

// Plain is a convenience for tests and tools: the archive bytes.
func Plain(m Manifest, files []File) ([]byte, Manifest, error) {
	var buf bytes.Buffer
	out, err := WriteArchive(&buf, m, files)
	return buf.Bytes(), out, err
}
