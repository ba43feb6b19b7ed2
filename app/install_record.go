package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"onramp/store"
	"onramp/talos/install"
)

// The Install step keeps its outcome in the audit trail of Onramp's
// database (store.DB.Record: append-only, hash-chained), so that the
// evidence of each node survives a restart and the site is never
// bootstrapped twice; the admin kubeconfig goes into the vault (encrypted)
// when it is unlocked. Nothing here is secret: fingerprints, states,
// reasons and volumes, keyed by the site machine and the cluster's ID.

// Audit actions of the Install step.
const (
	auditInstallStart  = "install.start"
	auditInstallFinish = "install.finish"
)

// installStartRecord is the detail of an install.start event: what the
// technician confirmed before anything was sent to the node.
type installStartRecord struct {
	Cluster     string   `json:"cluster"`
	Hostname    string   `json:"hostname"`
	IP          string   `json:"ip"`
	Fingerprint string   `json:"fingerprint"` // compared with the node's console and pinned
	Steps       []string `json:"steps"`
}

// installRecord is the detail of an install.finish event.
type installRecord struct {
	Cluster       string      `json:"cluster"` // the secrets bundle's cluster ID
	Node          InstallNode `json:"node"`
	Bootstrapped  bool        `json:"bootstrapped,omitempty"`
	BootstrapNode string      `json:"bootstrapNode,omitempty"`
	Healthy       bool        `json:"healthy,omitempty"`
}

func clusterID(b *secrets.Bundle) string {
	if b == nil || b.Cluster == nil {
		return ""
	}
	return b.Cluster.ID
}

// kubeconfigSecret names the vault entry of a cluster's admin kubeconfig.
func kubeconfigSecret(cluster string) string { return "cluster/" + cluster + "/kubeconfig" }

// record appends one event to the audit trail; without a database the
// outcome lives in memory only, as said in the log.
func (i *Install) record(action, subject string, detail any) {
	if err := i.vault.record(context.Background(), action, subject, detail); err != nil {
		i.log.Warn("install not recorded", "action", action, "subject", subject, "err", err)
	}
}

// recordFinish keeps a finished run's node and the cluster's state, and the
// kubeconfig in the vault once fetched.
func (i *Install) recordFinish(key string, bundle *secrets.Bundle) {
	id := clusterID(bundle)
	if id == "" {
		return
	}
	n, ok := i.nodeView(key)
	if !ok {
		return
	}
	rec := installRecord{Cluster: id, Node: n}
	var kc []byte
	i.mu.Lock()
	if i.cluster != nil && sameCluster(i.bundle, bundle) {
		st := i.cluster.State()
		rec.Bootstrapped, rec.BootstrapNode, rec.Healthy = st.Bootstrapped, st.BootstrapNode, st.Healthy
		if st.Kubeconfig && i.kubeconfigKept != id {
			kc = i.cluster.Kubeconfig()
		}
	}
	i.mu.Unlock()
	i.record(auditInstallFinish, key, rec)
	if kc == nil {
		return
	}
	_, sv := i.vault.journal()
	if sv == nil || !sv.Unlocked() {
		return // kept in memory only; the Site step says the vault is locked
	}
	if err := sv.Put(context.Background(), kubeconfigSecret(id), kc, "admin kubeconfig fetched from "+n.Hostname); err != nil {
		i.log.Warn("kubeconfig not kept in the vault", "err", err)
		return
	}
	i.mu.Lock()
	i.kubeconfigKept = id
	i.mu.Unlock()
}

// nodeView is the view of one site machine by its key.
func (i *Install) nodeView(key string) (InstallNode, bool) {
	site, _ := i.site.installInputs()
	if site == nil {
		return InstallNode{}, false
	}
	v := i.view()
	for k, m := range site.Machines {
		if machineKey(m) == key && k < len(v.Nodes) {
			return v.Nodes[k], true
		}
	}
	return InstallNode{}, false
}

// restore loads, once per cluster, the recorded outcome of every node that
// has no run in memory, and the cluster's bootstrap state and kubeconfig.
func (i *Install) restore(bundle *secrets.Bundle) {
	id := clusterID(bundle)
	i.mu.Lock()
	done := id == "" || i.restored == id
	i.mu.Unlock()
	if done {
		return
	}
	db, sv := i.vault.journal()
	if db == nil {
		return
	}
	events, err := db.Audit(context.Background())
	if err != nil {
		i.log.Warn("install record not read", "err", err)
		return
	}
	latest := map[string]installRecord{}
	at := map[string]time.Time{}
	for _, e := range events {
		if e.Action != auditInstallFinish {
			continue
		}
		var rec installRecord
		if json.Unmarshal([]byte(e.Detail), &rec) != nil || rec.Cluster != id {
			continue
		}
		latest[e.Subject], at[e.Subject] = rec, e.Time
	}
	var kc []byte
	if sv != nil && sv.Unlocked() {
		if b, err := sv.Get(context.Background(), kubeconfigSecret(id)); err == nil {
			kc = b
		} else if !errors.Is(err, store.ErrNotFound) {
			i.log.Warn("kubeconfig not read from the vault", "err", err)
		}
	}

	i.mu.Lock()
	defer i.mu.Unlock()
	if i.restored == id {
		return
	}
	i.restored = id
	if i.cluster == nil || !sameCluster(i.bundle, bundle) {
		i.cluster, i.bundle = install.NewCluster(), bundle
	}
	var st install.ClusterState
	for key, rec := range latest {
		if rec.Bootstrapped && !st.Bootstrapped {
			st.Bootstrapped, st.BootstrapNode = true, rec.BootstrapNode
		}
		st.Healthy = st.Healthy || rec.Healthy
		if i.runs[key] != nil {
			continue
		}
		n := rec.Node
		n.Message = fmt.Sprintf("recorded %s", at[key].Local().Format("2006-01-02 15:04"))
		installed := n.State == nodeVerified || n.State == nodeNotVerified || n.State == nodeInstalled ||
			slices.ContainsFunc(n.Steps, func(s InstallStep) bool {
				return s.Name == string(install.StepInstall) && s.State == string(install.StateDone)
			})
		i.runs[key] = &installRun{node: n, installed: installed}
	}
	if st.Bootstrapped || kc != nil {
		i.cluster.Restore(st, kc)
		if kc != nil {
			i.kubeconfigKept = id
		}
	}
}
