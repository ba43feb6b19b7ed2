package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"sync"
)

// Shell is the frame around the steps: which face Onramp shows, and the
// kiosk's guarded exit.
type Shell struct {
	mode     Mode
	adminPIN string
	// authRequired is true when web clients must log in (non-loopback listen).
	authRequired bool

	mu         sync.Mutex
	quit       func() // set by the desktop face; nil in web mode
	allowClose bool   // set once the admin PIN was accepted
}

// NewShell returns the Shell service. adminPIN guards leaving kiosk mode.
func NewShell(mode Mode, adminPIN string, authRequired bool) *Shell {
	return &Shell{mode: mode, adminPIN: adminPIN, authRequired: authRequired}
}

// Session is what the UI needs to know about how it is being shown.
type Session struct {
	Mode          Mode `json:"mode"`
	AuthRequired  bool `json:"authRequired"`
	Authenticated bool `json:"authenticated"`
}

// Session reports the face and the auth state. A call that reaches this
// method over the web has passed authentication already.
func (s *Shell) Session() (Session, error) {
	return Session{Mode: s.mode, AuthRequired: s.authRequired, Authenticated: true}, nil
}

// ErrWrongPIN is returned for a wrong admin PIN.
var ErrWrongPIN = errors.New("wrong PIN")

// Quit closes the app. In kiosk mode it takes the admin PIN.
func (s *Shell) Quit(pin string) error {
	if s.mode == ModeKiosk && (s.adminPIN == "" || subtle.ConstantTimeCompare([]byte(pin), []byte(s.adminPIN)) != 1) {
		return ErrWrongPIN
	}
	s.mu.Lock()
	quit := s.quit
	s.allowClose = true
	s.mu.Unlock()
	if quit == nil {
		return errors.New("quit: this face of Onramp cannot be closed from the UI; stop the server instead")
	}
	quit()
	return nil
}

// setQuit installs the function that ends the desktop app.
func (s *Shell) setQuit(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quit = f
}

// mayClose answers the window's close request: kiosk windows close only
// after Quit accepted the PIN (which calls the quit function directly).
func (s *Shell) mayClose(context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode != ModeKiosk || s.allowClose
}
