package talos

import (
	"errors"
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"go.yaml.in/yaml/v4"
)

// NewSecrets generates a site's secrets bundle (CAs, tokens, encryption keys) for Talos
// v1.14. It is generated once per site and must only ever be stored encrypted.
func NewSecrets(clock secrets.Clock) (*secrets.Bundle, error) {
	if clock == nil {
		clock = secrets.NewClock()
	}

	bundle, err := secrets.NewBundle(clock, config.TalosVersion1_14)
	if err != nil {
		return nil, fmt.Errorf("generate secrets bundle: %w", err)
	}

	return bundle, nil
}

// MarshalSecrets encodes a bundle in talosctl's secrets.yaml format. The bytes are
// plaintext key material: encrypt them (the store wraps them with age) before they
// touch a disk, and never log them.
func MarshalSecrets(bundle *secrets.Bundle) ([]byte, error) {
	if bundle == nil {
		return nil, errors.New("marshal secrets: nil bundle")
	}

	data, err := yaml.Marshal(bundle)
	if err != nil {
		return nil, fmt.Errorf("marshal secrets: %w", err)
	}

	return data, nil
}

// UnmarshalSecrets decodes and validates a bundle produced by MarshalSecrets (or by
// `talosctl gen secrets`). A nil clock means the system clock.
func UnmarshalSecrets(data []byte, clock secrets.Clock) (*secrets.Bundle, error) {
	if clock == nil {
		clock = secrets.NewClock()
	}

	bundle := &secrets.Bundle{}
	if err := yaml.Unmarshal(data, bundle); err != nil {
		// The yaml error may quote the input; report only its position-free kind.
		return nil, errors.New("unmarshal secrets: not a secrets bundle document")
	}

	bundle.Clock = clock

	if err := bundle.Validate(config.TalosVersion1_14); err != nil {
		return nil, fmt.Errorf("unmarshal secrets: %w", err)
	}

	return bundle, nil
}
