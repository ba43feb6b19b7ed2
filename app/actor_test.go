package app

import (
	"context"
	"strings"
	"testing"
)

// The audit trail names the technician from the settings, as it is at the
// time of each action; without a name, "technician".
func TestAuditActorIsTheTechnician(t *testing.T) {
	t.Parallel()
	a := newTestApp(t)
	t.Cleanup(a.Close)
	if _, err := a.Settings.Set(Preferences{Theme: "system", NetbootMode: "auto", Technician: "bad\x07name"}); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Errorf("a name with a control character: %v", err)
	}
	if _, err := a.Settings.Set(Preferences{Theme: "system", NetbootMode: "auto", Technician: strings.Repeat("x", 81)}); err == nil {
		t.Error("an 81-character name was accepted")
	}
	if _, err := a.Vault.Create(vaultPass); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Settings.Set(Preferences{Theme: "system", NetbootMode: "auto", Technician: "Ada Lovelace"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Vault.Lock(); err != nil {
		t.Fatal(err)
	}
	db, _ := a.Vault.journal()
	events, err := db.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range events {
		got[e.Action] = e.Actor
	}
	if got["vault.create"] != DefaultActor || got["vault.lock"] != "Ada Lovelace" {
		t.Errorf("actors by action: %v; want vault.create by %q, vault.lock by %q", got, DefaultActor, "Ada Lovelace")
	}
}
