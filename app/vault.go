package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"onramp/store"
)

// Vault is the passphrase-protected store of the cluster's secrets
// (store.Vault, in <dataDir>/onramp.db). Creating or unlocking it lets the
// Site step keep the secrets bundle and the Omni join token encrypted at
// rest, so restarting Onramp mid-visit loses nothing; locking drops them
// from memory until the next unlock.
//
// The database is opened when the service is made; if that fails (another
// Onramp holds it, a corrupt file) every method returns that error, which
// names the file, and the rest of the app works without a vault. Each call
// retries the open, so closing the other Onramp is enough.
type Vault struct {
	dataDir string
	bus     *Bus
	site    *Site
	opts    store.VaultOptions

	mu    sync.Mutex
	db    *store.DB
	store *store.Vault
}

// VaultStatus is what the vault panel shows. Bus event "vault:changed"
// carries it after every change.
type VaultStatus struct {
	Exists   bool `json:"exists"`
	Unlocked bool `json:"unlocked"`
}

// NewVault opens the database in dataDir (see Vault for failures) and
// hands the store to site.
func NewVault(dataDir string, bus *Bus, site *Site) *Vault {
	return newVault(dataDir, bus, site, store.VaultOptions{Actor: DefaultActor})
}

func newVault(dataDir string, bus *Bus, site *Site, opts store.VaultOptions) *Vault {
	v := &Vault{dataDir: dataDir, bus: bus, site: site, opts: opts}
	v.mu.Lock()
	_, _ = v.openLocked() // the error is reported by every call
	v.mu.Unlock()
	return v
}

func (v *Vault) openLocked() (*store.Vault, error) {
	if v.store != nil {
		return v.store, nil
	}
	db, err := store.Open(context.Background(), v.dataDir)
	if err != nil {
		return nil, err
	}
	v.db, v.store = db, store.NewVault(db, v.opts)
	if v.site != nil {
		v.site.attachVault(v.store)
	}
	return v.store, nil
}

func (v *Vault) statusLocked(ctx context.Context) (VaultStatus, error) {
	sv, err := v.openLocked()
	if err != nil {
		return VaultStatus{}, err
	}
	ok, err := sv.Exists(ctx)
	if err != nil {
		return VaultStatus{}, err
	}
	return VaultStatus{Exists: ok, Unlocked: sv.Unlocked()}, nil
}

// Status says whether a vault exists and is unlocked.
func (v *Vault) Status() (VaultStatus, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.statusLocked(context.Background())
}

// do runs fn on the open store and answers with the new status, published
// as "vault:changed" when fn succeeded.
func (v *Vault) do(fn func(ctx context.Context, sv *store.Vault) error) (VaultStatus, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ctx := context.Background()
	sv, err := v.openLocked()
	if err != nil {
		return VaultStatus{}, err
	}
	opErr := fn(ctx, sv)
	st, err := v.statusLocked(ctx)
	if err != nil {
		return VaultStatus{}, err
	}
	if opErr != nil {
		return st, opErr
	}
	if v.bus != nil {
		v.bus.Publish("vault:changed", st)
	}
	return st, nil
}

// Create makes the vault with passphrase and leaves it unlocked. Cluster
// secrets that exist only in memory are stored in it at once.
func (v *Vault) Create(passphrase string) (VaultStatus, error) {
	return v.do(func(ctx context.Context, sv *store.Vault) error {
		if err := sv.Create(ctx, passphrase); err != nil {
			return err
		}
		if v.site != nil {
			if err := v.site.vaultUnlocked(); err != nil {
				return fmt.Errorf("vault created, but the cluster secrets were not stored in it: %w", err)
			}
		}
		return nil
	})
}

// Unlock loads the vault's keys, and the site's secrets from it.
func (v *Vault) Unlock(passphrase string) (VaultStatus, error) {
	return v.do(func(ctx context.Context, sv *store.Vault) error {
		if err := sv.Unlock(ctx, passphrase); err != nil {
			if errors.Is(err, store.ErrNoVault) {
				return errors.New("unlock vault: there is no vault yet: create one")
			}
			return err
		}
		if v.site != nil {
			if err := v.site.vaultUnlocked(); err != nil {
				return fmt.Errorf("vault unlocked, but the cluster secrets in it could not be loaded: %w", err)
			}
		}
		return nil
	})
}

// Lock drops the keys, and the secrets the vault holds, from memory.
func (v *Vault) Lock() (VaultStatus, error) {
	return v.do(func(ctx context.Context, sv *store.Vault) error {
		if err := sv.Lock(ctx); err != nil {
			return err
		}
		if v.site != nil {
			v.site.vaultLocked()
		}
		return nil
	})
}

// ChangePassphrase rewraps the vault's key with a new passphrase; the old
// one is required even while unlocked.
func (v *Vault) ChangePassphrase(oldPassphrase, newPassphrase string) (VaultStatus, error) {
	return v.do(func(ctx context.Context, sv *store.Vault) error {
		return sv.ChangePassphrase(ctx, oldPassphrase, newPassphrase)
	})
}

// journal returns the open database (for the audit trail) and the vault,
// or nils when the database cannot be opened.
func (v *Vault) journal() (*store.DB, *store.Vault) {
	if v == nil {
		return nil, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, err := v.openLocked(); err != nil {
		return nil, nil
	}
	return v.db, v.store
}

// actorName is who the audit trail records for an action now: the
// technician's name from the settings (VaultOptions.ActorFunc), else
// DefaultActor.
func (v *Vault) actorName() string {
	if v != nil && v.opts.ActorFunc != nil {
		if a := v.opts.ActorFunc(); a != "" {
			return a
		}
	}
	return DefaultActor
}

// errNoDatabase: onramp.db could not be opened, nothing can be recorded.
var errNoDatabase = errors.New("no database")

// record appends one event to the audit trail, detail as JSON, in the
// technician's name. Install, Handoff and SecureBoot record through it.
func (v *Vault) record(ctx context.Context, action, subject string, detail any) error {
	db, _ := v.journal()
	if db == nil {
		return errNoDatabase
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("record %s: %w", action, err)
	}
	return db.Record(ctx, store.Event{Actor: v.actorName(), Action: action, Subject: subject, Detail: string(b)})
}

// close closes the database (App.Close).
func (v *Vault) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.db != nil {
		if v.site != nil {
			v.site.vaultLocked()
			v.site.attachVault(nil)
		}
		v.db.Close()
		v.db, v.store = nil, nil
	}
}
