// Package report is the site report of a visit (DESIGN step 8): a record for
// the lab's quality system of who did what when, every machine with its
// serial, the certificate fingerprint the technician confirmed, its
// SecureBoot and TPM evidence and the SHA-256 of the config it was given,
// and the head of Onramp's hash-chained audit trail with the result of
// checking the whole chain (store.DB.VerifyAudit).
//
// The head hash is the anchor: printed on paper or filed in the quality
// system, it lets anyone later check that the trail on the laptop (or in the
// handoff bundle) is the one that was reported, since rewriting any event
// changes it.
//
// A report is a plain value, built by the app from the site, the audit trail
// and the install record; this package renders it as JSON and as a
// self-contained printable HTML page (html/template escapes every field; no
// external stylesheet, script, font or image).
package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"

	"onramp/store"
	"onramp/talos/node"
)

// Format is the JSON report's format tag.
const Format = "onramp-site-report/v1"

// Report is one site's record.
type Report struct {
	Format    string    `json:"format"`
	Generated time.Time `json:"generated"`
	Onramp    Build     `json:"onramp"`
	Site      Site      `json:"site"`
	Visit     Visit     `json:"visit"`
	Counts    Counts    `json:"counts"`
	Machines  []Machine `json:"machines"`
	Handoff   *Handoff  `json:"handoff,omitempty"`
	Audit     Audit     `json:"audit"`
}

// Build is the Onramp that made the report.
type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Machinery string `json:"machinery,omitempty"` // Talos machinery module version
}

// Site is the cluster built on site.
type Site struct {
	Name              string `json:"name,omitempty"`
	Cluster           string `json:"cluster"`
	ClusterID         string `json:"clusterId,omitempty"`
	Endpoint          string `json:"endpoint,omitempty"`
	TalosVersion      string `json:"talosVersion,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	HandoffTarget     string `json:"handoffTarget,omitempty"`
	OmniAPIURL        string `json:"omniApiUrl,omitempty"`
	EncryptionPCRs    string `json:"encryptionPcrs,omitempty"`
	// The site image's expected signing keys.
	UKISigningKeyFingerprint string `json:"ukiSigningKeyFingerprint,omitempty"`
	PCRSigningKeyFingerprint string `json:"pcrSigningKeyFingerprint,omitempty"`
}

// Visit is who worked on the cluster and when, from the audit trail.
type Visit struct {
	Actors        []string   `json:"actors"`
	Started       *time.Time `json:"started,omitempty"`
	Finished      *time.Time `json:"finished,omitempty"`
	Bootstrapped  bool       `json:"bootstrapped"`
	BootstrapNode string     `json:"bootstrapNode,omitempty"`
	Healthy       bool       `json:"healthy"`
}

// Counts sum up the machines.
type Counts struct {
	Machines     int `json:"machines"`
	Verified     int `json:"verified"`
	NotVerified  int `json:"notVerified"`
	NotInstalled int `json:"notInstalled"`
}

// Machine is one machine of the site.
type Machine struct {
	Hostname string `json:"hostname"`
	Role     string `json:"role"`
	MAC      string `json:"mac,omitempty"`
	UUID     string `json:"uuid,omitempty"`
	Serial   string `json:"serial,omitempty"`
	IP       string `json:"ip,omitempty"`
	// State is the install state: verified, not-verified, installed,
	// failed, cancelled, or not-installed.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Fingerprint is the maintenance certificate fingerprint the technician
	// compared with the node's console and Onramp pinned.
	Fingerprint string     `json:"fingerprint,omitempty"`
	ConfirmedBy string     `json:"confirmedBy,omitempty"`
	ConfirmedAt *time.Time `json:"confirmedAt,omitempty"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
	// ConfigSHA256 is the SHA-256 of the machine config applied to the node.
	ConfigSHA256 string         `json:"configSha256,omitempty"`
	Evidence     *node.Evidence `json:"evidence,omitempty"`
}

// Handoff is how the cluster's secrets left the device.
type Handoff struct {
	ExportedAt   *time.Time `json:"exportedAt,omitempty"`
	ExportedBy   string     `json:"exportedBy,omitempty"`
	BundleSHA256 string     `json:"bundleSha256,omitempty"`
	Recipients   []string   `json:"recipients,omitempty"`
	Passphrase   bool       `json:"passphrase,omitempty"`
	WipedAt      *time.Time `json:"wipedAt,omitempty"`
	WipedBy      string     `json:"wipedBy,omitempty"`
}

// Audit is the state of the audit trail when the report was made.
type Audit struct {
	Events   int    `json:"events"`
	HeadSeq  int64  `json:"headSeq"`
	HeadHash string `json:"headHash"`
	// Verified: VerifyAudit checked every link of the chain; Problem says
	// what broke otherwise.
	Verified bool          `json:"verified"`
	Problem  string        `json:"problem,omitempty"`
	Trail    []store.Event `json:"trail"`
}

// Count fills in r.Counts from r.Machines.
func (r *Report) Count() {
	c := Counts{Machines: len(r.Machines)}
	for _, m := range r.Machines {
		switch m.State {
		case "verified":
			c.Verified++
		case "not-installed", "idle", "":
			c.NotInstalled++
		default:
			c.NotVerified++
		}
	}
	r.Counts = c
}

// JSON renders the report, indented, with a final newline.
func (r Report) JSON() ([]byte, error) {
	r.Format = Format
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render report: %w", err)
	}
	return append(b, '\n'), nil
}

//go:embed report.html.tmpl
var pageText string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		return "—"
	},
	"dash": func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	},
	"yes": func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	},
	"ints": func(v []int) string {
		s := make([]string, len(v))
		for k, n := range v {
			s[k] = fmt.Sprint(n)
		}
		return strings.Join(s, ", ")
	},
	"short": func(s string) string {
		// Install records are JSON; the trail shows their action instead.
		if strings.HasPrefix(s, "{") {
			return "(record)"
		}
		if r := []rune(s); len(r) > 160 {
			return string(r[:160]) + "…"
		}
		return s
	},
	"join": strings.Join,
}).Parse(pageText))

// HTML renders the report as one printable page.
func (r Report) HTML() ([]byte, error) {
	r.Format = Format
	var buf bytes.Buffer
	if err := page.Execute(&buf, r); err != nil {
		return nil, fmt.Errorf("render report: %w", err)
	}
	return buf.Bytes(), nil
}
