//go:build !desktop

package main

// desktopBuild is false for a plain `go build`: Wails needs its build tags
// and cgo, so such a binary always serves the UI over HTTP.
const desktopBuild = false
