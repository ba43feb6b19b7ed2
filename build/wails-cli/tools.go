//go:build tools

// Package tools pins the Wails CLI; the Makefile builds it with
// `go build -o ../bin/wails github.com/wailsapp/wails/v2/cmd/wails`.
package tools

import _ "github.com/wailsapp/wails/v2/cmd/wails"
