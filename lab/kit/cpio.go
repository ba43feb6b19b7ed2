package kit

import (
	"fmt"
	"io"
)

// CPIOWriter writes the "newc" (SVR4, magic 070701) cpio format the kernel
// unpacks into its initramfs: a 110-byte ASCII header, the NUL-terminated
// name padded to 4 bytes, the data padded to 4 bytes, and a final
// "TRAILER!!!" entry.
type CPIOWriter struct {
	w     io.Writer
	ino   uint32
	err   error
	names map[string]bool
}

// NewCPIOWriter returns a writer appending entries to w.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: w, ino: 1, names: map[string]bool{}}
}

// File modes for entries (S_IFMT bits as in stat(2)).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

func (c *CPIOWriter) entry(name string, mode uint32, data []byte, rdevMajor, rdevMinor uint32) error {
	if c.err != nil {
		return c.err
	}
	if c.names[name] {
		c.err = fmt.Errorf("cpio: duplicate entry %q", name)
		return c.err
	}
	c.names[name] = true
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.ino++
	buf := make([]byte, 0, len(hdr)+len(name)+8+len(data)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	if _, err := c.w.Write(buf); err != nil {
		c.err = fmt.Errorf("cpio: write %s: %w", name, err)
	}
	return c.err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// Dir adds a directory.
func (c *CPIOWriter) Dir(name string, perm uint32) error {
	return c.entry(name, modeDir|perm, nil, 0, 0)
}

// File adds a regular file.
func (c *CPIOWriter) File(name string, perm uint32, data []byte) error {
	return c.entry(name, modeRegular|perm, data, 0, 0)
}

// Symlink adds a symbolic link name → target.
func (c *CPIOWriter) Symlink(name, target string) error {
	return c.entry(name, modeSymlink|0o777, []byte(target), 0, 0)
}

// CharDev adds a character device node.
func (c *CPIOWriter) CharDev(name string, perm, major, minor uint32) error {
	return c.entry(name, modeCharDev|perm, nil, major, minor)
}

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	delete(c.names, "TRAILER!!!")
	return c.entry("TRAILER!!!", 0, nil, 0, 0)
}
