package app

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"onramp/report"
	"onramp/store"
	"onramp/talos"
)

// Report is the Report step (DESIGN step 8): the site's record for the
// lab's quality system, built from the site, the audit trail (each node's
// install.start and install.finish, the handoff) and the trail's verified
// head hash. The audit trail is the source: what was not recorded is not
// reported, and the report of a cluster whose secrets were wiped after the
// handoff is still complete.
type Report struct {
	site    *Site
	install *Install
	vault   *Vault
	build   BuildInfo
	now     func() time.Time
}

// NewReport returns the service.
func NewReport(site *Site, inst *Install, vault *Vault, build BuildInfo) *Report {
	return &Report{site: site, install: inst, vault: vault, build: build, now: time.Now}
}

// Get returns the report of the site's cluster.
func (r *Report) Get() (report.Report, error) {
	return r.make(context.Background())
}

// JSON returns the report as the indented JSON file the quality system keeps.
func (r *Report) JSON() (string, error) {
	rep, err := r.make(context.Background())
	if err != nil {
		return "", err
	}
	b, err := rep.JSON()
	return string(b), err
}

// HTML returns the report as one self-contained printable page.
func (r *Report) HTML() (string, error) {
	rep, err := r.make(context.Background())
	if err != nil {
		return "", err
	}
	b, err := rep.HTML()
	return string(b), err
}

// Audit actions of the Handoff step (handoff.go).
const (
	auditHandoffExport = "handoff.export"
	auditHandoffWipe   = "handoff.wipe"
)

// clusterDetail is the part every install and handoff record shares.
type clusterDetail struct {
	Cluster string `json:"cluster"`
}

func eventCluster(e store.Event) string {
	switch e.Action {
	case auditInstallStart, auditInstallFinish, auditHandoffExport, auditHandoffWipe:
	default:
		return ""
	}
	var d clusterDetail
	if json.Unmarshal([]byte(e.Detail), &d) != nil {
		return ""
	}
	return d.Cluster
}

// reportCluster is the cluster the report is about: the one whose secrets
// are in memory, else the last one the trail names (after a wipe).
func reportCluster(bundleID string, events []store.Event) string {
	if bundleID != "" {
		return bundleID
	}
	for k := len(events) - 1; k >= 0; k-- {
		if id := eventCluster(events[k]); id != "" {
			return id
		}
	}
	return ""
}

func (r *Report) make(ctx context.Context) (report.Report, error) {
	site, bundle := r.site.installInputs()
	if site == nil {
		return report.Report{}, errors.New("no site yet: fill in the Site step first")
	}
	rep := report.Report{
		Format:    report.Format,
		Generated: r.now().UTC().Round(0),
		Onramp:    report.Build{Version: r.build.Version, Commit: r.build.Commit, Machinery: ModuleVersion("github.com/siderolabs/talos/pkg/machinery")},
		Audit:     report.Audit{Trail: []store.Event{}},
		Machines:  []report.Machine{},
		Visit:     report.Visit{Actors: []string{}},
	}
	var events []store.Event
	db, _ := r.vault.journal()
	if db == nil {
		rep.Audit.Problem = "Onramp's database could not be opened: nothing was recorded"
	} else {
		var err error
		if events, err = db.Audit(ctx); err != nil {
			return report.Report{}, err
		}
		seq, head, verr := db.VerifyAudit(ctx)
		rep.Audit.Verified, rep.Audit.HeadSeq, rep.Audit.HeadHash = verr == nil, seq, head
		if verr != nil {
			rep.Audit.Problem = verr.Error()
			if n := len(events); n > 0 {
				rep.Audit.HeadSeq, rep.Audit.HeadHash = events[n-1].Seq, events[n-1].Hash
			}
		}
		rep.Audit.Events = len(events)
		if events != nil {
			rep.Audit.Trail = events
		}
	}
	id := reportCluster(clusterID(bundle), events)
	rep.Site = reportSite(site, id)

	// The latest records of each machine of this cluster.
	starts := map[string]store.Event{}
	finishes := map[string]store.Event{}
	records := map[string]installRecord{}
	var exp, wipe *store.Event
	actors := []string{}
	for k, e := range events {
		if !slices.Contains(actors, e.Actor) && e.Actor != "" {
			actors = append(actors, e.Actor)
		}
		if id == "" || eventCluster(e) != id {
			continue
		}
		t := e.Time
		if rep.Visit.Started == nil && e.Action == auditInstallStart {
			rep.Visit.Started = &t
		}
		rep.Visit.Finished = &t
		switch e.Action {
		case auditInstallStart:
			starts[e.Subject] = e
		case auditInstallFinish:
			var rec installRecord
			if json.Unmarshal([]byte(e.Detail), &rec) == nil {
				finishes[e.Subject], records[e.Subject] = e, rec
				if rec.Bootstrapped && !rep.Visit.Bootstrapped {
					rep.Visit.Bootstrapped, rep.Visit.BootstrapNode = true, rec.BootstrapNode
				}
				rep.Visit.Healthy = rep.Visit.Healthy || rec.Healthy
			}
		case auditHandoffExport:
			exp = &events[k]
		case auditHandoffWipe:
			wipe = &events[k]
		}
	}
	rep.Visit.Actors = actors

	views := r.install.machineViews()
	for _, m := range site.Machines {
		key := machineKey(m)
		rm := report.Machine{Hostname: m.Hostname, Role: string(m.Role), MAC: m.MAC, UUID: m.UUID, State: "not-installed"}
		if e, ok := starts[key]; ok {
			var d installStartRecord
			if json.Unmarshal([]byte(e.Detail), &d) == nil {
				t := e.Time
				rm.Fingerprint, rm.ConfirmedBy, rm.ConfirmedAt, rm.IP = d.Fingerprint, e.Actor, &t, d.IP
			}
		}
		if rec, ok := records[key]; ok {
			n := rec.Node
			t := finishes[key].Time
			rm.State, rm.Error, rm.FinishedAt, rm.ConfigSHA256 = n.State, n.Error, &t, n.ConfigSHA256
			if n.Serial != "" {
				rm.Serial = n.Serial
			}
			if n.IP != "" {
				rm.IP = n.IP
			}
			if rm.Fingerprint == "" {
				rm.Fingerprint = n.Fingerprint
			}
			if n.Evidence != nil {
				ev := *n.Evidence
				rm.Evidence = &ev
			}
			if rm.MAC == "" {
				rm.MAC = n.MAC
			}
		}
		if mv := findMachine(views, m); mv != nil {
			if rm.Serial == "" {
				rm.Serial = mv.Attrs["serial"]
			}
			if rm.MAC == "" {
				rm.MAC = mv.MAC
			}
			if rm.UUID == "" {
				rm.UUID = firstNonEmpty(mv.UUID, mv.Attrs["uuid"])
			}
			if rm.IP == "" {
				rm.IP = mv.IP
			}
		}
		rep.Machines = append(rep.Machines, rm)
	}
	rep.Count()

	if exp != nil {
		var d handoffExportRecord
		_ = json.Unmarshal([]byte(exp.Detail), &d)
		t := exp.Time
		rep.Handoff = &report.Handoff{ExportedAt: &t, ExportedBy: exp.Actor, BundleSHA256: d.SHA256, Recipients: d.Recipients, Passphrase: d.Passphrase}
		if wipe != nil && wipe.Seq > exp.Seq {
			w := wipe.Time
			rep.Handoff.WipedAt, rep.Handoff.WipedBy = &w, wipe.Actor
		}
	}
	return rep, nil
}

func reportSite(site *talos.Site, id string) report.Site {
	s := report.Site{
		Name: site.Name, Cluster: site.Cluster, ClusterID: id, Endpoint: site.Endpoint,
		TalosVersion: firstNonEmpty(site.TalosVersion, talos.DefaultTalosVersion), KubernetesVersion: site.KubernetesVersion,
		HandoffTarget: string(site.Handoff.Target), EncryptionPCRs: firstNonEmpty(string(site.Encryption.PCRs), "7+11"),
		UKISigningKeyFingerprint: site.SecureBoot.UKISigningKeyFingerprint, PCRSigningKeyFingerprint: site.SecureBoot.PCRSigningKeyFingerprint,
	}
	if site.Handoff.Omni != nil {
		s.OmniAPIURL = site.Handoff.Omni.APIURL
	}
	return s
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}
