// Package secureboot makes and checks what a site needs to take over a
// server's UEFI SecureBoot: its own Platform Key (PK), Key Exchange Key (KEK)
// and signature database key (db), the EFI_SIGNATURE_LISTs that carry their
// certificates, and time-based authenticated variable updates
// (EFI_VARIABLE_AUTHENTICATION_2 with a PKCS#7 SignedData, RFC 2315) that a
// firmware in setup mode accepts for PK (self-signed), KEK (signed by PK) and
// db (signed by KEK). The formats are those of the UEFI specification 2.10,
// section 8.2 (SetVariable, authenticated variables) and section 32
// (Secure Boot and Driver Signing: signature database, EFI_CERT_X509_GUID).
//
// Microsoft's KEK and db certificates are appended by default: real servers
// load option ROMs (RAID, NIC, GPU firmware) signed by Microsoft's UEFI CA,
// and a db without it leaves such a machine without video or boot devices.
// They are bundled (microsoft/*.esl), extracted from Debian's
// OVMF_VARS_4M.ms.fd by ParseVarStore, which reads an EDK2 variable store
// (authenticated variable format, EDK2 MdeModulePkg/Include/Guid/
// VariableFormat.h).
//
// Private keys are secrets: this package returns them in memory (KeySet) for
// the caller to keep in the encrypted vault; it never writes them to disk.
// Fingerprints are what Talos reports in SecurityState: the SHA-256 of the
// UKI signing certificate's DER, and of the PCR signing public key's PKIX
// DER, both lower-case hex.
package secureboot
