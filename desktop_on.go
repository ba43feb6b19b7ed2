//go:build desktop

package main

// desktopBuild is true when the binary links the Wails window (tags
// desktop,production,webkit2_41 — see the Makefile).
const desktopBuild = true
