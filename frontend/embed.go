// Package frontend embeds the built user interface (frontend/dist, made by
// `npm run build`). In a fresh clone dist holds only .gitkeep, so Go builds
// and tests work before the frontend is built; the app then serves a page
// that says how to build it.
package frontend

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// UI returns the built frontend with index.html at its root.
func UI() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a constant, valid path
	}
	return sub
}
