package lab

import (
	"encoding/json"
	"fmt"
	"net"

	"onramp/netboot"
)

// AssetEnrollISO is where the SecureBoot key-enrollment ISO sits under the
// assets directory: the path the app's SecureBoot service writes it to, and
// the one an enroll boot plan names.
const AssetEnrollISO = "secureboot/enroll.iso"

// enrollPlanDecision is app.PlanDecision's JSON for kind enroll.
type enrollPlanDecision struct {
	Kind netboot.DecisionKind `json:"kind"`
	ISO  string               `json:"iso"`
}

// EnrollPlanJSON is a boot plan (app.PlanSpec JSON, read by `onramp netboot
// --plan`) that sends each of ms into SecureBoot key enrollment with the ISO
// at AssetEnrollISO, and answers nothing else on the lab bridge (allowlist).
// app's tests load it with app.LoadBootPlan so the two cannot drift apart.
func EnrollPlanJSON(ms []Machine) ([]byte, error) {
	spec := struct {
		Machines  map[string]enrollPlanDecision `json:"machines"`
		Allowlist bool                          `json:"allowlist"`
	}{Machines: map[string]enrollPlanDecision{}, Allowlist: true}
	for _, m := range ms {
		hw, err := net.ParseMAC(m.MAC)
		if err != nil {
			return nil, fmt.Errorf("enroll plan: machine %s: %w", m.Name, err)
		}
		spec.Machines[hw.String()] = enrollPlanDecision{Kind: netboot.BootEnroll, ISO: AssetEnrollISO}
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("enroll plan: %w", err)
	}
	return append(b, '\n'), nil
}
