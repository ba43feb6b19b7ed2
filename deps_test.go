package main

import (
	"os/exec"
	"strings"
	"testing"
)

// Core packages (netboot, talos, store, lab, ...) must never import Wails or
// the app layer: the GUI is an adapter on top of them, not the other way round.
func TestCorePackagesDoNotImportGUI(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := fields[0]
		if pkg == "onramp" || pkg == "onramp/app" || strings.HasPrefix(pkg, "onramp/app/") {
			continue
		}
		checked++
		for _, dep := range fields[1:] {
			if strings.HasPrefix(dep, "github.com/wailsapp/") || dep == "onramp/app" || strings.HasPrefix(dep, "onramp/app/") {
				t.Errorf("core package %s imports %s", pkg, dep)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no core packages found")
	}
}
