package sim

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	cfgif "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
)

// metalMode is the validation.RuntimeMode of Talos on bare metal. machinery ships no
// metal mode; talos/ defines one too, duplicated here so the static binary does not
// import Onramp's config generator.
type metalMode struct{}

func (metalMode) String() string        { return "metal" }
func (metalMode) RequiresInstall() bool { return true }
func (metalMode) InContainer() bool     { return false }

// systemVolumes are the volumes whose encryption Onramp verifies.
var systemVolumes = []string{constants.StatePartitionLabel, constants.EphemeralPartitionLabel}

// KeySlot is one LUKS2 key slot of an installed volume.
type KeySlot struct {
	Slot                    int    `json:"slot"`
	Type                    string `json:"type"` // tpm, static, nodeid, kms
	PCRs                    []int  `json:"pcrs,omitempty"`
	PubKeyPCRs              []int  `json:"pubKeyPcrs,omitempty"`
	CheckSecurebootOnEnroll bool   `json:"checkSecurebootOnEnroll,omitempty"`
}

// MarkerVolume is one system volume as installed.
type MarkerVolume struct {
	Name        string    `json:"name"`
	Provider    string    `json:"provider"` // luks2 or none
	KeySlots    []KeySlot `json:"keySlots,omitempty"`
	LockToState bool      `json:"lockToState,omitempty"`
}

// Marker is the install marker in StateDir: what was installed, and when. It holds no
// cluster secret: the OS CA certificate is public, the apid key pair is the node's own.
type Marker struct {
	ConfigSHA256 string         `json:"configSha256"`
	InstalledAt  time.Time      `json:"installedAt"`
	MachineType  string         `json:"machineType"`
	ClusterName  string         `json:"clusterName"`
	Volumes      []MarkerVolume `json:"volumes"`
	Bootstrapped bool           `json:"bootstrapped"`
	// ConfigEncrypted says the config is stored sealed with the STATE key
	// (config.enc); otherwise it is stored as Talos stores it on an unencrypted
	// STATE partition (config.yaml).
	ConfigEncrypted bool   `json:"configEncrypted"`
	OSCACerts       []byte `json:"osCaCerts"`
	ServerCert      []byte `json:"serverCert"`
	ServerKey       []byte `json:"serverKey"`
}

const (
	markerFile    = "install.json"
	configEncFile = "config.enc"
	configFile    = "config.yaml"
)

func sealedFile(vol string) string { return "sealed-" + vol + ".json" }

func readMarker(dir string) (*Marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}

	if err != nil {
		return nil, fmt.Errorf("read install marker: %w", err)
	}

	var m Marker
	if err = json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode install marker: %w", err)
	}

	return &m, nil
}

// writeFile writes atomically (temp file + rename) with mode 0600.
func writeFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}

	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}

	defer os.Remove(tmp.Name()) //nolint:errcheck

	if _, err = tmp.Write(data); err != nil {
		tmp.Close() //nolint:errcheck

		return fmt.Errorf("write %s: %w", name, err)
	}

	if err = tmp.Sync(); err != nil {
		tmp.Close() //nolint:errcheck

		return fmt.Errorf("sync %s: %w", name, err)
	}

	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}

	if err = os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", name, err)
	}

	return nil
}

func writeJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}

	return writeFile(dir, name, b)
}

// ApplyError is an ApplyConfiguration refusal with the gRPC code to return.
type ApplyError struct {
	Invalid bool // InvalidArgument (config does not validate) vs FailedPrecondition
	Err     error
}

func (e *ApplyError) Error() string { return e.Err.Error() }
func (e *ApplyError) Unwrap() error { return e.Err }

// volumeEncryption returns the encryption of a system volume: the VolumeConfig
// document, else the legacy machine.systemDiskEncryption.
func volumeEncryption(cfg config.Provider, name string) cfgif.EncryptionConfig {
	if vc, ok := cfg.Volumes().ByName(name); ok && vc.Encryption() != nil && vc.Encryption().Provider() != block.EncryptionProviderNone {
		return vc.Encryption()
	}

	if cfg.Machine() != nil && cfg.Machine().SystemDiskEncryption() != nil {
		if enc := cfg.Machine().SystemDiskEncryption().Get(strings.ToLower(name)); enc != nil {
			return enc
		}
	}

	return nil
}

// install validates data like Talos, enrolls TPM keys and writes the install marker.
// It refuses TPM enrollment under checkSecurebootStatusOnEnroll when SecureBoot is
// off or in setup mode, with Talos' own words.
func (s *Sim) install(data []byte) (err error) {
	// one apply at a time; after a successful one the node is on its way to reboot
	s.mu.Lock()
	if s.applying {
		s.mu.Unlock()

		return &ApplyError{Err: errors.New("a configuration has already been applied: the node is installing")}
	}

	s.applying = true
	s.mu.Unlock()

	defer func() {
		if err != nil {
			s.mu.Lock()
			s.applying = false
			s.mu.Unlock()
		}
	}()

	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		return &ApplyError{Invalid: true, Err: fmt.Errorf("failed to parse config: %w", err)}
	}

	if _, err = cfg.Validate(metalMode{}, validation.WithStrict()); err != nil {
		return &ApplyError{Invalid: true, Err: fmt.Errorf("configuration validation failed: %w", err)}
	}

	if cfg.Machine() == nil || cfg.Machine().Security() == nil || cfg.Machine().Security().IssuingCA() == nil || len(cfg.Machine().Security().IssuingCA().Crt) == 0 {
		return &ApplyError{Invalid: true, Err: errors.New("config has no machine CA")}
	}

	s.mu.Lock()
	fw := s.fw
	s.mu.Unlock()

	now := s.cfg.Clock()
	sum := sha256.Sum256(data)

	marker := &Marker{
		ConfigSHA256: hex.EncodeToString(sum[:]),
		InstalledAt:  now.UTC(),
		MachineType:  cfg.Machine().Type().String(),
	}

	if cc := cfg.K8sClusterConfig(); cc != nil {
		marker.ClusterName = cc.ClusterName()
	}

	keys := map[string][]byte{}
	sealed := map[string]*SealedKey{}

	for _, name := range systemVolumes {
		mv := MarkerVolume{Name: name, Provider: "none"}

		enc := volumeEncryption(cfg, name)
		if enc != nil && enc.Provider() == block.EncryptionProviderLUKS2 {
			mv.Provider = block.EncryptionProviderLUKS2.String()

			for _, k := range enc.Keys() {
				ks := KeySlot{Slot: k.Slot()}

				mv.LockToState = mv.LockToState || k.LockToSTATE()

				switch {
				case k.TPM() != nil:
					ks.Type = block.EncryptionKeyTPM.String()
					ks.PCRs = k.TPM().PCRs()
					ks.PubKeyPCRs = k.TPM().PubKeyPCRs()
					ks.CheckSecurebootOnEnroll = k.TPM().CheckSecurebootOnEnroll()

					if ks.CheckSecurebootOnEnroll {
						if !fw.SecureBoot {
							return &ApplyError{Err: errors.New("failed to enroll the TPM2 key, as SecureBoot is disabled (and checkSecurebootOnEnroll is enabled)")}
						}

						if fw.SetupMode {
							return &ApplyError{Err: errors.New("failed to enroll the TPM2 key, as the system is in SecureBoot setup mode (and checkSecurebootOnEnroll is enabled)")}
						}
					}

					if s.sealer == nil {
						return &ApplyError{Err: fmt.Errorf("failed to enroll the TPM2 key for %s: no TPM 2.0 device found", name)}
					}

					key := make([]byte, 32)
					if _, err := io.ReadFull(rand.Reader, key); err != nil {
						return fmt.Errorf("generate disk key: %w", err)
					}

					sk, err := s.sealer.Seal(key, ks.PCRs)
					if err != nil {
						return fmt.Errorf("seal %s key in TPM: %w", name, err)
					}

					keys[name], sealed[name] = key, sk
				case k.Static() != nil:
					ks.Type = block.EncryptionKeyStatic.String()
				case k.NodeID() != nil:
					ks.Type = block.EncryptionKeyNodeID.String()
				case k.KMS() != nil:
					ks.Type = block.EncryptionKeyKMS.String()
				}

				mv.KeySlots = append(mv.KeySlots, ks)
			}
		}

		marker.Volumes = append(marker.Volumes, mv)
	}

	// the apid certificate: a control plane (which holds the machine CA key) issues
	// it now, and again at every boot that can read the config; a worker gets it
	// from trustd at boot
	ca := cfg.Machine().Security().IssuingCA()

	marker.OSCACerts = slices.Clone(ca.Crt)
	for _, acc := range cfg.Machine().Security().AcceptedCAs() {
		marker.OSCACerts = append(marker.OSCACerts, acc.Crt...)
	}

	if len(ca.Key) > 0 {
		caCert, caKey, err := caPair(ca.Crt, ca.Key)
		if err != nil {
			return &ApplyError{Invalid: true, Err: fmt.Errorf("machine CA: %w", err)}
		}

		if marker.ServerCert, marker.ServerKey, err = issueServer(now, caCert, caKey, s.cfg.CertIPs(), cfg.Machine().Security().CertSANs()); err != nil {
			return fmt.Errorf("issue API certificate: %w", err)
		}
	}

	for name, sk := range sealed {
		if err := writeJSON(s.cfg.StateDir, sealedFile(name), sk); err != nil {
			return err
		}
	}

	if key, ok := keys[constants.StatePartitionLabel]; ok {
		blob, err := seal(key, data)
		if err != nil {
			return err
		}

		if err = writeFile(s.cfg.StateDir, configEncFile, blob); err != nil {
			return err
		}

		marker.ConfigEncrypted = true
	} else if err := writeFile(s.cfg.StateDir, configFile, data); err != nil {
		return err
	}

	// the marker goes last: its presence means "installed"
	if err := writeJSON(s.cfg.StateDir, markerFile, marker); err != nil {
		return err
	}

	s.log.Info("installed", "machine_type", marker.MachineType, "config_sha256", marker.ConfigSHA256)

	// the applied config takes effect at once: from now on events and the
	// kernel log go where it says (the install sequence's events included)
	s.applyRuntimeConfig(cfg)

	return nil
}

// seal encrypts data with AES-256-GCM under key (the STATE volume key).
func seal(key, data []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal config: %w", err)
	}

	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal config: %w", err)
	}

	nonce := make([]byte, gcm.NonceSize())
	if _, err = io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("seal config: %w", err)
	}

	return gcm.Seal(nonce, nonce, data, nil), nil
}

func open(key, blob []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}

	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}

	if len(blob) < gcm.NonceSize() {
		return nil, errors.New("open config: truncated")
	}

	out, err := gcm.Open(nil, blob[:gcm.NonceSize()], blob[gcm.NonceSize():], nil)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}

	return out, nil
}

// installedNode is the state of an installed boot.
type installedNode struct {
	marker *Marker
	cfg    config.Provider // nil when STATE could not be unlocked
	// stateErr says why the config is unavailable.
	stateErr     error
	tls          *tls.Config
	certs        *certHolder
	serveTrustd  bool      // control plane: sign workers' certificates
	needTrustd   bool      // worker: get the API certificate from trustd
	bootstrapped time.Time // zero: not bootstrapped in this boot
	bootedAt     time.Time
}

// bootInstalled unseals the volume keys (proving PCR 7 still matches), reads the
// config, publishes VolumeStatus and builds the mTLS credentials.
func (s *Sim) bootInstalled(ctx context.Context, st state.State, m *Marker) (*installedNode, error) {
	inst := &installedNode{marker: m, bootedAt: s.cfg.Clock()}

	var stateKey []byte

	for _, v := range m.Volumes {
		vs := block.NewVolumeStatus(block.NamespaceName, v.Name)
		spec := vs.TypedSpec()
		spec.Type = block.VolumeTypePartition
		spec.Phase = block.VolumePhaseReady
		spec.Location = "/dev/vda" // the simulator has no partition table; see README
		spec.Filesystem = block.FilesystemTypeXFS

		if v.Provider == block.EncryptionProviderLUKS2.String() {
			spec.EncryptionProvider = block.EncryptionProviderLUKS2
			spec.MountLocation = "/dev/mapper/luks2-" + strings.ToLower(v.Name)
			spec.EncryptionLockedToState = v.LockToState

			for _, ks := range v.KeySlots {
				if !slices.Contains(spec.ConfiguredEncryptionKeys, ks.Type) {
					spec.ConfiguredEncryptionKeys = append(spec.ConfiguredEncryptionKeys, ks.Type)
				}
			}

			slices.Sort(spec.ConfiguredEncryptionKeys)

			key, err := s.unlock(v, spec)
			if err != nil {
				spec.Phase = block.VolumePhaseFailed
				spec.PreFailPhase = block.VolumePhaseProvisioned
				spec.ErrorMessage = err.Error()

				s.log.Error("unlock volume", "volume", v.Name, "err", err)
				fmt.Fprintf(s.cfg.Console, "[talos] volume %s: %v\n", v.Name, err)

				if v.Name == constants.StatePartitionLabel {
					inst.stateErr = fmt.Errorf("STATE is locked: %w", err)
				}
			} else if v.Name == constants.StatePartitionLabel {
				stateKey = key
			}
		} else {
			spec.MountLocation = spec.Location
			spec.EncryptionProvider = block.EncryptionProviderNone
		}

		if err := st.Create(ctx, vs); err != nil {
			return nil, fmt.Errorf("create volume status %s: %w", v.Name, err)
		}
	}

	if inst.stateErr == nil {
		var data []byte

		if m.ConfigEncrypted {
			blob, err := os.ReadFile(filepath.Join(s.cfg.StateDir, configEncFile))
			if err == nil {
				data, err = open(stateKey, blob)
			}

			if err != nil {
				inst.stateErr = fmt.Errorf("read config from STATE: %w", err)
			}
		} else {
			var err error
			if data, err = os.ReadFile(filepath.Join(s.cfg.StateDir, configFile)); err != nil {
				inst.stateErr = fmt.Errorf("read config from STATE: %w", err)
			}
		}

		if inst.stateErr == nil {
			cfg, err := configloader.NewFromBytes(data)
			if err != nil {
				inst.stateErr = fmt.Errorf("load config from STATE: %w", err)
			} else {
				inst.cfg = cfg
				s.applyRuntimeConfig(cfg)
			}
		}
	}

	inst.certs = &certHolder{}

	var issued bool

	if inst.cfg != nil {
		if ca := inst.cfg.Machine().Security().IssuingCA(); ca != nil && len(ca.Key) > 0 {
			caCert, caKey, err := caPair(ca.Crt, ca.Key)
			if err != nil {
				return nil, fmt.Errorf("machine CA: %w", err)
			}

			c, k, err := issueServer(s.cfg.Clock(), caCert, caKey, s.cfg.CertIPs(), inst.cfg.Machine().Security().CertSANs())
			if err != nil {
				return nil, fmt.Errorf("issue API certificate: %w", err)
			}

			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				return nil, fmt.Errorf("load API certificate: %w", err)
			}

			inst.certs.set(pair)
			inst.serveTrustd, issued = true, true
		}
	}

	switch {
	case issued:
	case len(m.ServerCert) > 0:
		pair, err := tls.X509KeyPair(m.ServerCert, m.ServerKey)
		if err != nil {
			return nil, fmt.Errorf("load API certificate: %w", err)
		}

		inst.certs.set(pair)
	case inst.cfg != nil:
		inst.needTrustd = true
	default:
		s.log.Error("no API certificate: STATE is locked and this node has no machine CA key")
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(m.OSCACerts) {
		return nil, errors.New("load machine CA: no certificates")
	}

	inst.tls = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: inst.certs.get,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      pool,
	}

	return inst, nil
}

// unlock unseals a volume's TPM key slot, as Talos does when it opens the LUKS2
// volume at boot, and returns the key.
func (s *Sim) unlock(v MarkerVolume, spec *block.VolumeStatusSpec) ([]byte, error) {
	for _, ks := range v.KeySlots {
		if ks.Type != block.EncryptionKeyTPM.String() {
			continue
		}

		spec.TPMEncryptionOptions = block.TPMEncryptionOptionsInfo{PCRs: ks.PCRs, PubKeyPCRs: ks.PubKeyPCRs}

		b, err := os.ReadFile(filepath.Join(s.cfg.StateDir, sealedFile(v.Name)))
		if err != nil {
			return nil, fmt.Errorf("read sealed key: %w", err)
		}

		var sk SealedKey
		if err = json.Unmarshal(b, &sk); err != nil {
			return nil, fmt.Errorf("decode sealed key: %w", err)
		}

		if s.sealer == nil {
			return nil, errors.New("failed to unseal the TPM2 key: no TPM 2.0 device found")
		}

		key, err := s.sealer.Unseal(&sk)
		if err != nil {
			return nil, fmt.Errorf("failed to unseal the TPM2 key for slot %d: %w", ks.Slot, err)
		}

		slot := ks.Slot
		spec.EncryptionSlot = &slot
		return key, nil
	}

	// no TPM slot: the simulator cannot unlock static/nodeid/kms slots; report the
	// first slot as used (see README)
	if len(v.KeySlots) > 0 {
		slot := v.KeySlots[0].Slot
		spec.EncryptionSlot = &slot
	}

	return nil, nil
}

// fetchAndApply fetches talos.config= and applies it, retrying with backoff while
// the network comes up, like Talos does in maintenance mode.
func (s *Sim) fetchAndApply(ctx context.Context) {
	backoff := time.Second

	for attempt := 1; attempt <= 20; attempt++ {
		err := s.fetchAndApplyOnce(ctx)
		if err == nil {
			return
		}

		var ae *ApplyError
		if errors.As(err, &ae) {
			if ae.Invalid {
				s.publish(&machine.ConfigValidationErrorEvent{Error: err.Error()})
			}

			s.log.Error("config from talos.config= refused", "err", err)
			fmt.Fprintf(s.cfg.Console, "[talos] config refused: %v\n", err)

			return
		}

		s.log.Warn("fetch config", "url", s.cfg.ConfigURL, "attempt", attempt, "err", err)

		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}

		backoff = min(backoff*2, 30*time.Second)
	}
}

func (s *Sim) fetchAndApplyOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.ConfigURL, nil)
	if err != nil {
		return &ApplyError{Invalid: true, Err: fmt.Errorf("config URL: %w", err)}
	}

	// no keep-alive: one fetch, and no idle connection outlives it
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fetch config: %w", err)
	}
	defer resp.Body.Close() //nolint:errcheck

	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch config: HTTP %s", resp.Status)
	}

	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("fetch config: %w", err)
	}

	if s.Stage() != StageMaintenance {
		return nil
	}

	if err = s.install(data); err != nil {
		return err
	}

	s.requestReboot()

	return nil
}
