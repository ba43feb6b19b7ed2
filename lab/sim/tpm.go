package sim

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// SealedKey is a disk key sealed by the TPM: the TPM2B_PUBLIC and TPM2B_PRIVATE
// of a keyed-hash object created under the storage root key, whose authPolicy is
// TPM2_PolicyPCR over the listed PCRs (SHA-256 bank). Only the TPM that created it
// can load it, and only while the PCRs hold the values they held at sealing time.
// The layout mirrors the TPM token Talos stores in the LUKS2 header.
type SealedKey struct {
	Public     []byte `json:"sealed_blob_public"`
	Private    []byte `json:"sealed_blob_private"`
	PCRs       []int  `json:"pcrs"`
	Alg        string `json:"alg"`
	PolicyHash []byte `json:"policy_hash"`
}

// sealer serialises access to one TPM: the transports are not safe for concurrent
// use and a TPM holds only a few transient objects at a time.
type sealer struct {
	mu  sync.Mutex
	tpm transport.TPM
}

func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	sel := make([]uint, 0, len(pcrs))
	for _, p := range pcrs {
		sel = append(sel, uint(p))
	}

	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(sel...),
	}}}
}

// primary creates the ECC storage root key (the standard SRK template, so it is the
// same key on every call for the same TPM) and returns it with a flush function.
func (s *sealer) primary() (*tpm2.CreatePrimaryResponse, func(), error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(s.tpm)
	if err != nil {
		return nil, nil, fmt.Errorf("create primary key: %w", err)
	}

	return rsp, func() { _, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(s.tpm) }, nil
}

// Seal seals secret to the current values of pcrs with TPM2_Create under the SRK.
func (s *sealer) Seal(secret []byte, pcrs []int) (*SealedKey, error) {
	if s == nil || s.tpm == nil {
		return nil, errors.New("no TPM")
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	srk, flush, err := s.primary()
	if err != nil {
		return nil, err
	}
	defer flush()

	var policy []byte

	if len(pcrs) > 0 {
		sess, closeSess, err := tpm2.PolicySession(s.tpm, tpm2.TPMAlgSHA256, 16, tpm2.Trial())
		if err != nil {
			return nil, fmt.Errorf("start trial policy session: %w", err)
		}
		defer closeSess() //nolint:errcheck

		if _, err = (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(pcrs)}).Execute(s.tpm); err != nil {
			return nil, fmt.Errorf("policy PCR: %w", err)
		}

		dg, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(s.tpm)
		if err != nil {
			return nil, fmt.Errorf("get policy digest: %w", err)
		}

		policy = dg.PolicyDigest.Buffer
	}

	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgKeyedHash,
			NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{
				FixedTPM:     true,
				FixedParent:  true,
				UserWithAuth: len(pcrs) == 0,
				NoDA:         true,
			},
			AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		}),
	}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("create sealed object: %w", err)
	}

	return &SealedKey{
		Public:     tpm2.Marshal(rsp.OutPublic),
		Private:    tpm2.Marshal(rsp.OutPrivate),
		PCRs:       append([]int(nil), pcrs...),
		Alg:        "sha256",
		PolicyHash: policy,
	}, nil
}

// Unseal loads the sealed object and unseals it through a PolicyPCR session: it fails
// when any sealed PCR changed since sealing (TPM_RC_POLICY_FAIL).
func (s *sealer) Unseal(k *SealedKey) ([]byte, error) {
	if s == nil || s.tpm == nil {
		return nil, errors.New("no TPM")
	}

	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](k.Public)
	if err != nil {
		return nil, fmt.Errorf("decode sealed public: %w", err)
	}

	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](k.Private)
	if err != nil {
		return nil, fmt.Errorf("decode sealed private: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	srk, flush, err := s.primary()
	if err != nil {
		return nil, err
	}
	defer flush()

	obj, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("load sealed object: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: obj.ObjectHandle}.Execute(s.tpm) //nolint:errcheck

	auth := tpm2.PasswordAuth(nil)
	if len(k.PCRs) > 0 {
		pcrs := k.PCRs
		auth = tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
			_, err := tpm2.PolicyPCR{PolicySession: h, Pcrs: pcrSelection(pcrs)}.Execute(t)

			return err
		})
	}

	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.ObjectHandle, Name: obj.Name, Auth: auth}}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}

	return rsp.OutData.Buffer, nil
}
