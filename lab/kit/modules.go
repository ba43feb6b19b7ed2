package kit

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// GuestModules are the kernel modules a lab guest loads (with their
// dependencies): the virtio NIC and disk, virtio RNG (so crypto/rand does not
// wait for entropy), efivarfs (SecureBoot state from EFI variables) and vfat.
// The TPM TIS/CRB drivers are built into Debian's kernel.
var GuestModules = []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "efivarfs", "vfat", "nls_cp437", "nls_ascii"}

func modName(s string) string { return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_") }

// ResolveModules finds the .ko files for names under modulesDir and returns
// them with their dependencies (read from each module's .modinfo "depends="
// entry, as depmod does), dependencies first: the order insmod needs.
// modules.dep is not used because Debian generates it at install time.
func ResolveModules(modulesDir string, names []string) ([]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modulesDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			index[modName(d.Name())] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", modulesDir, err)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string, int) error
	visit = func(name string, depth int) error {
		name = modName(name)
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		}
		if depth > 32 {
			return fmt.Errorf("module dependencies too deep at %s", name)
		}
		p, ok := index[name]
		if !ok {
			return fmt.Errorf("module %s not found in %s", name, modulesDir)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, 0); err != nil {
			return nil, fmt.Errorf("resolve modules: %w", err)
		}
	}
	return order, nil
}

// moduleDepends reads the "depends=" entry of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("read module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
