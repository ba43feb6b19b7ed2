package sim

import "github.com/google/go-tpm/tpm2/transport"

// SealForTest and UnsealForTest expose the TPM sealing to the tests.
func SealForTest(tpm transport.TPM, secret []byte, pcrs []int) (*SealedKey, error) {
	return (&sealer{tpm: tpm}).Seal(secret, pcrs)
}

func UnsealForTest(tpm transport.TPM, k *SealedKey) ([]byte, error) {
	return (&sealer{tpm: tpm}).Unseal(k)
}
