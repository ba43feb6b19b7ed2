package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"onramp/store"
	"onramp/talos"
	"onramp/talos/handoff"
	"onramp/talos/install"
)

// Handoff is the Handoff step (DESIGN step 7). The technician writes the
// encrypted handoff bundle (talos/handoff: talosconfig, kubeconfig, the
// Talos secrets bundle, the inventory and the site report) for the fleet
// manager's public keys or a passphrase; the bundle is written to
// <dataDir>/handoff/ (ciphertext only) and handed to the browser to save.
// Then, as a separate action that needs the bundle's SHA-256 and the
// technician's word that the file was copied off the device, the cluster
// secrets, talosconfig and kubeconfig are wiped from the vault and from
// memory. Both are recorded in the audit trail.
//
// Go cannot promise that freed memory is overwritten: buffers this service
// made are cleared, the rest is dropped for the garbage collector.
type Handoff struct {
	dir     string // <dataDir>/handoff
	site    *Site
	install *Install
	vault   *Vault
	report  *Report
	bus     *Bus
	log     *slog.Logger
	now     func() time.Time
	// scryptWorkFactor for passphrase bundles; 0 = age's default (tests lower it).
	scryptWorkFactor int

	mu sync.Mutex // one export or wipe at a time
}

// NewHandoff returns the service.
func NewHandoff(dataDir string, site *Site, inst *Install, vault *Vault, rep *Report, bus *Bus, log *slog.Logger) *Handoff {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handoff{dir: filepath.Join(dataDir, "handoff"), site: site, install: inst, vault: vault, report: rep, bus: bus,
		log: log.With("component", "app/handoff"), now: time.Now}
}

// HandoffView is the Handoff step; "handoff:changed" carries it.
type HandoffView struct {
	Cluster   string `json:"cluster"`
	ClusterID string `json:"clusterId"`
	// Target is the site's handoff target: "omni", "bundle" or "".
	Target string `json:"target"`
	// Omni: the node configs carry SideroLink to this Omni (nothing to do here).
	Omni *HandoffOmni `json:"omni,omitempty"`
	// Secrets: the cluster secrets are on this device (in memory).
	Secrets bool `json:"secrets"`
	// Blockers say why a bundle cannot be written now.
	Blockers []string `json:"blockers"`
	// Contents are the files the bundle will hold.
	Contents []string `json:"contents"`
	// Kubeconfig: the admin kubeconfig is available for the bundle.
	Kubeconfig bool `json:"kubeconfig"`
	// Exported is the last bundle written for this cluster.
	Exported *HandoffExport `json:"exported,omitempty"`
	// Wiped: the secrets were wiped from this device after the export.
	Wiped   bool       `json:"wiped"`
	WipedAt *time.Time `json:"wipedAt,omitempty"`
	// CanWipe: a bundle was exported and the secrets are still here.
	CanWipe bool `json:"canWipe"`
}

// HandoffOmni is the Omni the nodes join.
type HandoffOmni struct {
	APIURL string `json:"apiUrl"`
	// JoinToken: a join token is set (the token itself never leaves the vault).
	JoinToken bool `json:"joinToken"`
}

// HandoffExportRequest says who can open the bundle: public keys (age1...,
// ssh-ed25519, ssh-rsa; one per entry or line), or a passphrase.
type HandoffExportRequest struct {
	Recipients []string `json:"recipients"`
	Passphrase string   `json:"passphrase,omitempty"`
}

// HandoffExport is a written bundle. Data (the ciphertext, base64 in JSON)
// is set only in the answer of Export and Bundle, for the browser to save.
type HandoffExport struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256"`
	Recipients []string  `json:"recipients"`
	Passphrase bool      `json:"passphrase"`
	Files      []string  `json:"files"`
	At         time.Time `json:"at"`
	Data       []byte    `json:"data,omitempty"`
}

// HandoffWipeRequest confirms the wipe: the SHA-256 of the bundle that was
// copied off the device, and the technician's word that it was.
type HandoffWipeRequest struct {
	SHA256 string `json:"sha256"`
	Copied bool   `json:"copied"`
}

// handoffExportRecord is the detail of a handoff.export event.
type handoffExportRecord struct {
	Cluster    string   `json:"cluster"`
	Name       string   `json:"name"`
	Size       int64    `json:"size"`
	SHA256     string   `json:"sha256"`
	Recipients []string `json:"recipients,omitempty"`
	Passphrase bool     `json:"passphrase,omitempty"`
	Files      []string `json:"files"`
}

// handoffWipeRecord is the detail of a handoff.wipe event.
type handoffWipeRecord struct {
	Cluster     string   `json:"cluster"`
	ClusterName string   `json:"clusterName,omitempty"` // the site's cluster name
	SHA256      string   `json:"sha256"`
	Removed     []string `json:"removed"`
}

// Handoff blockers.
const (
	blockHandoffLocked  = "Unlock the vault on the Site step: it holds the cluster secrets"
	blockHandoffWiped   = "The cluster secrets were wiped from this device after the handoff"
	blockHandoffRunning = "An install or verification is running: wait for it to finish"
)

var bundleContents = []string{"talosconfig", "kubeconfig", "secrets.yaml", "inventory.json", "report.json", "report.html"}

// Status returns the Handoff step's view.
func (h *Handoff) Status() (HandoffView, error) {
	return h.view(context.Background()), nil
}

func (h *Handoff) view(ctx context.Context) HandoffView {
	site, bundle := h.site.installInputs()
	v := HandoffView{Blockers: []string{}, Contents: []string{}}
	if site == nil {
		v.Blockers = append(v.Blockers, blockNoSite)
		return v
	}
	v.Cluster, v.Target = site.Cluster, string(site.Handoff.Target)
	if o := site.Handoff.Omni; o != nil {
		v.Omni = &HandoffOmni{APIURL: o.APIURL, JoinToken: o.JoinToken != ""}
		if !v.Omni.JoinToken {
			if _, sv := h.vault.journal(); sv != nil {
				v.Omni.JoinToken, _ = sv.Has(ctx, secretJoinToken)
			}
		}
	}
	events := h.events(ctx)
	id := reportCluster(clusterID(bundle), events)
	v.ClusterID, v.Secrets = id, bundle != nil
	exp, wipe := lastHandoff(events, id)
	if exp != nil {
		v.Exported = exportFromEvent(*exp, h.dir)
	}
	if wipe != nil && bundle == nil {
		v.Wiped, v.WipedAt = true, &wipe.Time
	}
	switch {
	case bundle != nil:
	case v.Wiped:
		v.Blockers = append(v.Blockers, blockHandoffWiped)
	case h.site.secretsLockedInVault():
		v.Blockers = append(v.Blockers, blockHandoffLocked)
	default:
		v.Blockers = append(v.Blockers, blockNoSecrets)
	}
	if len(site.Problems()) > 0 {
		v.Blockers = append(v.Blockers, blockProblems)
	}
	if bundle != nil {
		_, v.Kubeconfig = h.kubeconfig(ctx, id, false)
		for _, f := range bundleContents {
			if f != "kubeconfig" || v.Kubeconfig {
				v.Contents = append(v.Contents, f)
			}
		}
	}
	v.CanWipe = bundle != nil && exp != nil && (wipe == nil || wipe.Seq < exp.Seq)
	return v
}

// events is the audit trail, or nil without a database.
func (h *Handoff) events(ctx context.Context) []store.Event {
	db, _ := h.vault.journal()
	if db == nil {
		return nil
	}
	ev, err := db.Audit(ctx)
	if err != nil {
		h.log.Warn("audit trail not read", "err", err)
	}
	return ev
}

// lastHandoff finds the cluster's latest export and wipe events.
func lastHandoff(events []store.Event, id string) (exp, wipe *store.Event) {
	if id == "" {
		return nil, nil
	}
	for k := range events {
		e := &events[k]
		if eventCluster(*e) != id {
			continue
		}
		switch e.Action {
		case auditHandoffExport:
			exp = e
		case auditHandoffWipe:
			wipe = e
		}
	}
	return exp, wipe
}

func exportFromEvent(e store.Event, dir string) *HandoffExport {
	var d handoffExportRecord
	if json.Unmarshal([]byte(e.Detail), &d) != nil {
		return nil
	}
	return &HandoffExport{Name: d.Name, Path: filepath.Join(dir, d.Name), Size: d.Size, SHA256: d.SHA256,
		Recipients: d.Recipients, Passphrase: d.Passphrase, Files: d.Files, At: e.Time}
}

// kubeconfig returns the cluster's admin kubeconfig: the Install step's
// copy in memory, else the vault's. want=false only says whether it exists.
func (h *Handoff) kubeconfig(ctx context.Context, id string, want bool) ([]byte, bool) {
	i := h.install
	i.mu.Lock()
	if i.cluster != nil && i.bundle != nil && clusterID(i.bundle) == id {
		if st := i.cluster.State(); st.Kubeconfig {
			var kc []byte
			if want {
				kc = i.cluster.Kubeconfig()
			}
			i.mu.Unlock()
			return kc, true
		}
	}
	i.mu.Unlock()
	_, sv := h.vault.journal()
	if sv == nil {
		return nil, false
	}
	if !want {
		ok, _ := sv.Has(ctx, kubeconfigSecret(id))
		return nil, ok && sv.Unlocked()
	}
	kc, err := sv.Get(ctx, kubeconfigSecret(id))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			h.log.Warn("kubeconfig not read from the vault", "err", err)
		}
		return nil, false
	}
	return kc, true
}

// talosconfig is the installer's (the one the nodes were installed with),
// else one made afresh from the secrets bundle (a new admin client
// certificate signed by the same CA).
func (h *Handoff) talosconfig(site *talos.Site, id string) ([]byte, error) {
	i := h.install
	i.mu.Lock()
	var in *install.Installer
	if i.in != nil && clusterID(i.bundle) == id {
		in = i.in
	}
	i.mu.Unlock()
	if in != nil {
		return in.Talosconfig(), nil
	}
	_, bundle := h.site.installInputs()
	gen, err := talos.NewGenerator(site, talos.WithSecrets(bundle))
	if err != nil {
		return nil, fmt.Errorf("make talosconfig: %w", err)
	}
	return gen.Talosconfig()
}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// Export writes the bundle and records it; the answer carries the
// ciphertext for the browser to save, its SHA-256 and where it was written.
func (h *Handoff) Export(req HandoffExportRequest) (HandoffExport, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ctx := context.Background()
	v := h.view(ctx)
	if len(v.Blockers) > 0 {
		return HandoffExport{}, fmt.Errorf("cannot write the handoff bundle yet: %s", strings.Join(v.Blockers, "; "))
	}
	opts := handoff.Options{ScryptWorkFactor: h.scryptWorkFactor}
	var keys []string
	if req.Passphrase != "" {
		if rs, _ := handoff.ParseRecipients(req.Recipients); len(rs) > 0 {
			return HandoffExport{}, errors.New("write handoff bundle: use the public keys or a passphrase, not both")
		}
		if err := store.CheckPassphrase(req.Passphrase); err != nil {
			return HandoffExport{}, fmt.Errorf("write handoff bundle: %w", err)
		}
		opts.Passphrase = req.Passphrase
	} else {
		rs, err := handoff.ParseRecipients(req.Recipients)
		if err != nil {
			return HandoffExport{}, fmt.Errorf("write handoff bundle: %w", err)
		}
		if len(rs) == 0 {
			return HandoffExport{}, fmt.Errorf("write handoff bundle: %w", handoff.ErrNoRecipient)
		}
		opts.Recipients = rs
		for _, r := range rs {
			keys = append(keys, r.Text)
		}
	}

	site, bundle := h.site.installInputs()
	if bundle == nil || site == nil {
		return HandoffExport{}, errors.New("write handoff bundle: the cluster secrets are gone")
	}
	id := clusterID(bundle)
	files, err := h.files(ctx, site, id)
	defer func() {
		for _, f := range files {
			clear(f.Data)
		}
	}()
	if err != nil {
		return HandoffExport{}, fmt.Errorf("write handoff bundle: %w", err)
	}
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		return HandoffExport{}, fmt.Errorf("write handoff bundle: %w", err)
	}
	now := h.now().UTC()
	base := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(site.Cluster), "-"), "-")
	if base == "" {
		base = "cluster"
	}
	name := fmt.Sprintf("%s-handoff-%s.age", base, now.Format("20060102-150405"))
	m := handoff.Manifest{Site: site.Name, Cluster: site.Cluster, ClusterID: id, Created: now, Onramp: h.report.build.Version}
	sealed, err := handoff.WriteFile(filepath.Join(h.dir, name), opts, m, files)
	if err != nil {
		return HandoffExport{}, fmt.Errorf("write handoff bundle: %w", err)
	}
	names := make([]string, 0, len(sealed.Manifest.Files))
	for _, e := range sealed.Manifest.Files {
		names = append(names, e.Name)
	}
	rec := handoffExportRecord{Cluster: id, Name: name, Size: sealed.Size, SHA256: sealed.SHA256, Recipients: keys, Passphrase: opts.Passphrase != "", Files: names}
	if err := h.record(ctx, auditHandoffExport, id, rec); err != nil {
		os.Remove(sealed.Path)
		return HandoffExport{}, fmt.Errorf("write handoff bundle: not recorded in the audit trail, so not kept: %w", err)
	}
	data, err := os.ReadFile(sealed.Path)
	if err != nil {
		return HandoffExport{}, fmt.Errorf("read handoff bundle back: %w", err)
	}
	h.log.Info("handoff bundle written", "cluster", id, "path", sealed.Path, "sha256", sealed.SHA256, "recipients", len(keys), "passphrase", opts.Passphrase != "")
	h.publish(ctx)
	return HandoffExport{Name: name, Path: sealed.Path, Size: sealed.Size, SHA256: sealed.SHA256, Recipients: keys,
		Passphrase: opts.Passphrase != "", Files: names, At: now, Data: data}, nil
}

// files gathers the bundle's plaintext (the caller clears it).
func (h *Handoff) files(ctx context.Context, site *talos.Site, id string) ([]handoff.File, error) {
	_, bundle := h.site.installInputs()
	secretsYAML, err := talos.MarshalSecrets(bundle)
	if err != nil {
		return nil, err
	}
	files := []handoff.File{{Name: "secrets.yaml", Data: secretsYAML}}
	tc, err := h.talosconfig(site, id)
	if err != nil {
		return files, err
	}
	files = append(files, handoff.File{Name: "talosconfig", Data: tc})
	if kc, ok := h.kubeconfig(ctx, id, true); ok {
		files = append(files, handoff.File{Name: "kubeconfig", Data: kc})
	}
	rep, err := h.report.make(ctx)
	if err != nil {
		return files, err
	}
	rj, err := rep.JSON()
	if err != nil {
		return files, err
	}
	rh, err := rep.HTML()
	if err != nil {
		return files, err
	}
	inv, err := json.MarshalIndent(map[string]any{
		"format": "onramp-inventory/v1", "site": site.Name, "cluster": site.Cluster, "clusterId": id,
		"endpoint": site.Endpoint, "machines": rep.Machines,
	}, "", "  ")
	if err != nil {
		return files, err
	}
	return append(files,
		handoff.File{Name: "report.json", Data: rj},
		handoff.File{Name: "report.html", Data: rh},
		handoff.File{Name: "inventory.json", Data: append(inv, '\n')}), nil
}

// Bundle returns the last exported bundle of the cluster again (to save it
// once more), with its ciphertext.
func (h *Handoff) Bundle() (HandoffExport, error) {
	v := h.view(context.Background())
	if v.Exported == nil {
		return HandoffExport{}, errors.New("no handoff bundle was written for this cluster yet")
	}
	data, err := os.ReadFile(v.Exported.Path)
	if err != nil {
		return HandoffExport{}, fmt.Errorf("read handoff bundle: %w", err)
	}
	if got := handoff.Hash(data); got != v.Exported.SHA256 {
		return HandoffExport{}, fmt.Errorf("read handoff bundle: %s changed since it was written (SHA-256 %s, recorded %s)", v.Exported.Path, got, v.Exported.SHA256)
	}
	e := *v.Exported
	e.Data = data
	return e, nil
}

// Wipe removes the cluster secrets, the talosconfig and the kubeconfig from
// the vault and from memory, once a bundle was exported for this cluster and
// the technician confirmed it was copied off the device.
func (h *Handoff) Wipe(req HandoffWipeRequest) (HandoffView, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ctx := context.Background()
	site, bundle := h.site.installInputs()
	events := h.events(ctx)
	id := reportCluster(clusterID(bundle), events)
	exp, wipe := lastHandoff(events, id)
	name := ""
	if site != nil {
		name = site.Cluster
	}
	switch {
	case bundle == nil && wipe != nil:
		return h.view(ctx), errors.New("wipe secrets: they were already wiped from this device")
	case bundle == nil && h.site.secretsLockedInVault():
		return h.view(ctx), errors.New("wipe secrets: " + blockHandoffLocked)
	case bundle == nil:
		return h.view(ctx), errors.New("wipe secrets: there are no cluster secrets on this device")
	case exp == nil:
		return h.view(ctx), errors.New("wipe secrets: write the handoff bundle first: without it the cluster could not be managed any more")
	case !req.Copied:
		return h.view(ctx), errors.New("wipe secrets: confirm that the bundle was copied off this device first")
	}
	var d handoffExportRecord
	_ = json.Unmarshal([]byte(exp.Detail), &d)
	if got := strings.ToLower(strings.TrimSpace(req.SHA256)); got == "" || got != d.SHA256 {
		return h.view(ctx), fmt.Errorf("wipe secrets: the bundle you confirmed (%s) is not the last one written (%s)", shortHash(got), shortHash(d.SHA256))
	}
	if h.install.running() {
		return h.view(ctx), errors.New("wipe secrets: " + blockHandoffRunning)
	}

	var removed []string
	_, sv := h.vault.journal()
	if sv != nil {
		names, err := sv.Names(ctx)
		if err != nil {
			return h.view(ctx), fmt.Errorf("wipe secrets: %w", err)
		}
		var doomed []string
		for _, n := range names {
			if n == secretBundle || strings.HasPrefix(n, secretBundle+".replaced-") || n == kubeconfigSecret(id) {
				doomed = append(doomed, n)
			}
		}
		if len(doomed) > 0 && !sv.Unlocked() {
			return h.view(ctx), errors.New("wipe secrets: " + blockHandoffLocked)
		}
		for _, n := range doomed {
			if err := sv.Delete(ctx, n, "wiped after the handoff bundle "+shortHash(d.SHA256)+" was copied off the device"); err != nil {
				return h.view(ctx), fmt.Errorf("wipe secrets: %w", err)
			}
			removed = append(removed, n)
		}
	}
	h.site.dropSecrets()
	h.install.dropSecrets()
	removed = append(removed, "memory: secrets bundle, talosconfig, kubeconfig")
	if err := h.record(ctx, auditHandoffWipe, id, handoffWipeRecord{Cluster: id, ClusterName: name, SHA256: d.SHA256, Removed: removed}); err != nil {
		h.log.Warn("wipe not recorded", "err", err)
	}
	h.log.Info("cluster secrets wiped after handoff", "cluster", id, "removed", len(removed))
	h.publish(ctx)
	return h.view(ctx), nil
}

func shortHash(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	if s == "" {
		return "none"
	}
	return s
}

func (h *Handoff) record(ctx context.Context, action, subject string, detail any) error {
	return h.vault.record(ctx, action, subject, detail)
}

func (h *Handoff) publish(ctx context.Context) {
	if h.bus != nil {
		h.bus.Publish("handoff:changed", h.view(ctx))
	}
}

// dropSecrets forgets the cluster secrets (the Handoff step wiped them).
func (s *Site) dropSecrets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundle, s.persisted = nil, false
	s.publishLocked()
}

// running reports whether an install or verification runs.
func (i *Install) running() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, r := range i.runs {
		if r.node.State == nodeRunning {
			return true
		}
	}
	return false
}

// dropSecrets forgets the installer (talosconfig) and the kubeconfig; the
// runs' evidence stays.
func (i *Install) dropSecrets() {
	i.mu.Lock()
	i.in, i.cluster, i.bundle, i.kubeconfigKept = nil, nil, nil, ""
	i.mu.Unlock()
	i.publish()
}

// wipedAt says when the cluster named name was handed off and its secrets
// wiped from this device, from the audit trail (Site.GenerateSecrets asks:
// new secrets under that name would make a second cluster).
func (h *Handoff) wipedAt(name string) (time.Time, bool) {
	for _, e := range slices.Backward(h.events(context.Background())) {
		if e.Action != auditHandoffWipe {
			continue
		}
		var d handoffWipeRecord
		if json.Unmarshal([]byte(e.Detail), &d) == nil && d.ClusterName == name {
			return e.Time, true
		}
	}
	return time.Time{}, false
}
