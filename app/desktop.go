package app

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"testing/fstest"

	"github.com/wailsapp/wails/v2"
	"github.com/wailsapp/wails/v2/pkg/options"
	"github.com/wailsapp/wails/v2/pkg/options/assetserver"
	"github.com/wailsapp/wails/v2/pkg/options/linux"
	wruntime "github.com/wailsapp/wails/v2/pkg/runtime"
)

// HasDisplay reports whether a graphical session is reachable.
func HasDisplay() bool {
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

// RunDesktop shows the app in a Wails window until the window closes or ctx
// ends. Kiosk mode is full-screen and frameless, and its window closes only
// through Shell.Quit with the admin PIN.
func RunDesktop(ctx context.Context, a *App, ui fs.FS) error {
	kiosk := a.Shell.mode == ModeKiosk
	if kiosk && a.Shell.adminPIN == "" {
		return fmt.Errorf("kiosk mode needs an admin PIN (--admin-pin or ONRAMP_ADMIN_PIN): without one the kiosk could never be left")
	}
	if ui == nil {
		ui = notBuiltUI
	} else if _, err := fs.Stat(ui, "index.html"); err != nil {
		ui = notBuiltUI
	}
	err := wails.Run(&options.App{
		Title:         "Onramp",
		Width:         1024,
		Height:        600,
		MinWidth:      800,
		MinHeight:     480,
		Fullscreen:    kiosk,
		Frameless:     kiosk,
		DisableResize: kiosk,
		AssetServer:   &assetserver.Options{Assets: ui},
		OnStartup: func(wctx context.Context) {
			a.Shell.setQuit(func() { wruntime.Quit(wctx) })
			msgs, cancel := a.Bus.Subscribe()
			go func() {
				defer cancel()
				for {
					select {
					case <-ctx.Done():
						a.Shell.mu.Lock()
						a.Shell.allowClose = true // a signal ends even a kiosk
						a.Shell.mu.Unlock()
						wruntime.Quit(wctx)
						return
					case m, ok := <-msgs:
						if !ok {
							return
						}
						wruntime.EventsEmit(wctx, m.Name, m.Data)
					}
				}
			}()
		},
		OnBeforeClose: func(wctx context.Context) bool { return !a.Shell.mayClose(wctx) },
		Bind:          a.Services(),
		Linux: &linux.Options{
			ProgramName:      "onramp",
			WebviewGpuPolicy: linux.WebviewGpuPolicyNever,
		},
	})
	if err != nil {
		return fmt.Errorf("desktop window: %w", err)
	}
	return nil
}

// notBuiltUI stands in for a frontend that was not built into the binary.
var notBuiltUI = fstest.MapFS{"index.html": {Data: []byte(notBuiltPage)}}
