// Package sim is a Talos node simulator: a small program that behaves like a Talos
// Linux node in the ways Onramp relies on, and speaks the real Talos API with the
// machinery protobufs, so that Onramp's real client (talos/node, built on
// github.com/siderolabs/talos/pkg/machinery/client) talks to it unchanged.
//
// It runs inside the virtual lab's QEMU guests (cmd/talossim, a static binary in the
// initramfs) and in-process in tests.
//
// Protocols:
//   - Talos API: gRPC on TCP 50000. MachineService (api/machine) for Version,
//     ApplyConfiguration, Bootstrap, ServiceList and Kubeconfig; the COSI State
//     service (github.com/cosi-project/runtime api/v1alpha1) for resources, served
//     from an in-memory COSI state with machinery's resource types and their
//     protobuf encodings.
//   - Maintenance mode: TLS 1.3 with a self-signed certificate made at boot; its SPKI
//     SHA-256 fingerprint (the one talosctl --cert-fingerprint pins) is printed on
//     the console. Installed mode: mutual TLS, the server certificate issued by the
//     machine (OS) CA from the applied config, client certificates verified against
//     it and their Organization checked for a Talos role (os:admin, os:reader, ...).
//   - TPM 2.0 (TCG TPM 2.0 Library, Part 3): the disk key is sealed with TPM2_Create
//     under the ECC storage root key with a TPM2_PolicyPCR authorisation policy over
//     PCR 7 (SHA-256), and unsealed at every installed boot through a policy session.
//   - UEFI: SecureBoot and SetupMode are read from efivarfs (UEFI spec 2.10, 3.3
//     Globally Defined Variables; 4 attribute bytes then the value).
//   - Events: github.com/siderolabs/siderolink api/events EventSinkService.Publish,
//     machine.MachineStatusEvent payloads with type URL "talos/runtime/<name>".
//
// See README.md for what is reproduced, faked, and out of reach.
package sim
