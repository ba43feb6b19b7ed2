// Shapes of the Go services' JSON. Keep in step with app/ (Go side).

export type Mode = 'desktop' | 'kiosk' | 'web';

export interface LabPrereq {
  name: string;
  present: boolean;
  path: string;
  hint: string;
}

export interface SystemInfo {
  version: string;
  commit: string;
  goVersion: string;
  machineryVersion: string;
  dataDir: string;
  mode: Mode;
  root: boolean;
  capNetBindService: boolean;
  capNetRaw: boolean;
  labPrereqs: LabPrereq[];
}

export interface NetInterface {
  name: string;
  mac: string;
  addrs: string[];
  up: boolean;
  mtu: number;
  wireless: boolean;
  loopback: boolean;
  virtual: boolean;
  cartHint: boolean;
  hint: string;
  /** Link detected (cable in, switch on); absent from older servers. */
  carrier?: boolean;
  /** The host's default route leaves here: likely the site network. */
  defaultRoute?: boolean;
  /** The virtual lab's network (QEMU machines), not a host NIC. */
  lab?: boolean;
}

/** Netboot.Status: whether the boot services run, and how. */
export interface NetbootStatus {
  running: boolean;
  iface?: string;
  /** Requested: auto | isolated | proxy. */
  mode?: string;
  /** Decided: isolated | proxy. */
  effective?: string;
  startedAt?: string;
  /** Why the services stopped, in plain words. */
  error?: string;
}

export interface StartRequest {
  iface: string;
  mode: NetbootMode;
  allowForeign: boolean;
}

/** A DHCP server that answered Netboot.Probe. */
export interface FoundServer {
  serverId: string;
  offeredIp?: string;
  bootFile?: string;
  proxy: boolean;
  summary: string;
}

/** One step on a machine's timeline (netboot.Event). */
export interface NetbootEvent {
  time: string;
  kind: string;
  mac?: string;
  uuid?: string;
  arch?: string;
  ip?: string;
  file?: string;
  bytes?: number;
  durationNs?: number;
  iface?: string;
  detail?: string;
  error?: string;
  attrs?: MachineAttrs;
}

export type MachineStage = 'dhcp' | 'tftp' | 'http' | 'maintenance' | 'installing' | 'running' | 'ignored' | 'error';

/**
 * What a node said about itself in Talos maintenance mode (talos/discover):
 * vendor, product, serial, uuid, secureBoot "on"|"off", tpm "present"|"absent",
 * uki "true"|"false", fingerprint (the maintenance API certificate's SPKI
 * SHA-256 in base64, as the node's console shows it), talos (version),
 * disks (count), disk0..disk3 ("/dev/sda 120.0 GiB SERIAL").
 */
export type MachineAttrs = Partial<Record<string, string>>;

/** One machine seen on the cart network, with its timeline. */
export interface MachineView {
  mac: string;
  uuid?: string;
  arch?: string;
  ip?: string;
  stage: MachineStage | string;
  problem?: string;
  /** Set once the node answered in Talos maintenance mode. */
  attrs?: MachineAttrs;
  firstSeen: string;
  lastSeen: string;
  timeline: NetbootEvent[] | null;
}

export type Theme = 'system' | 'light' | 'dark';
export type NetbootMode = 'auto' | 'isolated' | 'proxy';

export interface Settings {
  theme: Theme;
  iface: string;
  netbootMode: NetbootMode;
  /** Who does the visit, as the audit trail and the site report name them. */
  technician?: string;
}

export interface Session {
  mode: Mode;
  authRequired: boolean;
  authenticated: boolean;
}

/** State of the live link to the Go side, for the indicator in the frame. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline';

/** Whether the web transport needs the access PIN before it can go on. */
export type AuthState = 'unknown' | 'ok' | 'required';

export type EventHandler = (data: unknown) => void;
export type Unsubscribe = () => void;

// ---- Site (app/site.go, talos/site.go) -------------------------------------

export type Role = 'controlplane' | 'worker';
export type PCRPolicy = '7+11' | '11';
export type RecoveryType = '' | 'static' | 'kms';
export type HandoffTarget = '' | 'none' | 'omni' | 'bundle';
export type AddressingMode = '' | 'dhcp' | 'static';

/** Install disk selector; every set field must match. Sizes like "480GB", "512GiB". */
export interface DiskSelector {
  serial?: string;
  wwid?: string;
  model?: string;
  devPath?: string;
  minSize?: string;
  maxSize?: string;
}

export interface Bond {
  mode: string;
  links: string[];
}

export interface SiteNetwork {
  nameservers?: string[];
  ntpServers?: string[];
  vlan?: number;
  bond?: Bond;
}

export interface RegistryMirror {
  registry: string;
  endpoints: string[];
}

export interface Encryption {
  pcrs?: PCRPolicy | string;
  recovery: { type?: RecoveryType | string; kmsEndpoint?: string };
}

export interface Omni {
  apiUrl: string;
  joinToken: string;
}

export interface Handoff {
  target?: HandoffTarget | string;
  omni?: Omni;
}

export interface SiteEvents {
  sink?: string;
  kmsg?: string;
}

export interface Addressing {
  mode?: AddressingMode | string;
  address?: string;
  gateway?: string;
}

export interface Labels {
  site?: string;
  room?: string;
  assetTag?: string;
}

/** One server, identified by MAC and/or SMBIOS UUID. */
export interface SiteMachine {
  mac?: string;
  uuid?: string;
  role: Role | '';
  hostname: string;
  installDisk?: DiskSelector;
  interface?: string;
  addressing: Addressing;
  labels: Labels;
}

/** The site image's signing keys every node must report (64 lower-case hex each). */
export interface SecureBootExpect {
  ukiSigningKeyFingerprint?: string;
  pcrSigningKeyFingerprint?: string;
}

/** talos.Site: one cluster at one location. */
export interface Site {
  name?: string;
  cluster: string;
  talosVersion?: string;
  kubernetesVersion?: string;
  endpoint: string;
  installer?: string;
  schematic?: string;
  installDisk?: DiskSelector;
  network: SiteNetwork;
  registryMirrors?: RegistryMirror[];
  encryption: Encryption;
  handoff: Handoff;
  events: SiteEvents;
  secureBoot?: SecureBootExpect;
  machines: SiteMachine[] | null;
}

/** One validation failure at a field path such as "machines[2].installDisk.serial". */
export interface SiteProblem {
  path: string;
  message: string;
}

/** Site.Get / Save / Import / GenerateSecrets answer. */
export interface SiteView {
  exists: boolean;
  site?: Site;
  problems: SiteProblem[] | null;
  /** No problems: configs can be generated. */
  ready: boolean;
  /** The cluster secrets exist (in memory on the Go side; never sent). */
  secrets: boolean;
  /** The secrets are stored encrypted in the vault (survive a restart). */
  secretsPersisted?: boolean;
  pcr11OnlyExplanation: string;
}

// ---- Virtual lab (app/lab.go) ----------------------------------------------

export type LabFirmware = 'uefi' | 'uefi-secureboot' | 'bios' | 'mix';

export interface LabMachine {
  name: string;
  mac: string;
  firmware: string;
  /** booting | maintenance | installing | installed | failed … */
  state: string;
  reason?: string;
}

/** The virtual lab's image signing keys (kit.LabUKISigningKeyFingerprint …). */
export interface LabImageKeys {
  ukiSigningKeyFingerprint: string;
  pcrSigningKeyFingerprint: string;
}

export interface LabStatus {
  running: boolean;
  starting: boolean;
  machines: LabMachine[] | null;
  error: string;
  prereqsMissing: string[] | null;
  imageKeys?: LabImageKeys;
}

export interface LabUpRequest {
  machines: number;
  firmware: LabFirmware;
  tpm: boolean;
}

// ---- Install & Verify (app/install.go, talos/node) -------------------------

/** A system volume's status (talos/node Volume). */
export interface NodeVolume {
  id: string;
  phase: string;
  /** luks2 or none. */
  encryptionProvider: string;
  /** Configured key slot types: tpm, static, nodeid, kms. */
  keyTypes?: string[] | null;
  encryptionSlot?: number;
  tpmPcrs?: number[] | null;
  tpmPubKeyPcrs?: number[] | null;
  error?: string;
}

/** talos/node.Evidence: per-node proof of SecureBoot and TPM disk encryption. */
export interface NodeEvidence {
  node: string;
  verified: boolean;
  /** Why not verified, verbatim; empty when verified. */
  reasons?: string[] | null;
  secureBoot: boolean;
  bootedWithUKI: boolean;
  tpmPresent: boolean;
  ukiSigningKeyFingerprint: string;
  pcrSigningKeyFingerprint: string;
  volumes: NodeVolume[] | null;
  checkedAt: string;
}

export type InstallStepName = 'config' | 'apply' | 'install' | 'bootstrap' | 'health' | 'verify';
export type InstallStepState = 'pending' | 'running' | 'done' | 'failed' | 'skipped';
export type InstallState = 'idle' | 'running' | 'installed' | 'verified' | 'not-verified' | 'failed' | 'cancelled';

export interface InstallStep {
  name: InstallStepName | string;
  title: string;
  state: InstallStepState | string;
  message?: string;
  tookMs?: number;
}

/** One site machine on the Install and Verify steps. */
export interface InstallNode {
  mac: string;
  uuid?: string;
  hostname: string;
  role: Role | string;
  ip?: string;
  serial?: string;
  /** "on" | "off" | "" (unknown), as discovered. */
  secureBoot?: string;
  /** "present" | "absent" | "". */
  tpm?: string;
  /** Maintenance certificate fingerprint to compare with the node's console. */
  fingerprint?: string;
  ready: boolean;
  blocker?: string;
  state: InstallState | string;
  step?: string;
  message?: string;
  /** Why it failed, exact. */
  error?: string;
  steps: InstallStep[] | null;
  evidence?: NodeEvidence | null;
  startedAt?: string;
  finishedAt?: string;
}

export interface InstallView {
  nodes: InstallNode[] | null;
  /** Site-wide, in plain words; empty = none. */
  blockers: string[] | null;
  bootstrapped: boolean;
  bootstrapNode?: string;
  healthy: boolean;
  /** Fetched and held in memory on the Go side; never shown. */
  kubeconfig: boolean;
}

export interface InstallTarget {
  mac: string;
  fingerprint: string;
}

export interface InstallRequest {
  machines: InstallTarget[];
}

// ---- Handoff and Report (Go: app/handoff.go, app/report.go) ----------------

/** A written handoff bundle; `data` (base64 ciphertext) only in Export/Bundle answers. */
export interface HandoffExport {
  name: string;
  /** Where Onramp wrote it (ciphertext only), in its data directory. */
  path: string;
  size: number;
  /** SHA-256 of the encrypted file, hex. */
  sha256: string;
  /** Public keys it is encrypted to (age1..., ssh-ed25519 ..., ssh-rsa ...). */
  recipients: string[] | null;
  passphrase: boolean;
  files: string[] | null;
  at: string;
  data?: string;
}

export interface HandoffView {
  cluster: string;
  clusterId: string;
  /** The site's handoff target: "omni", "bundle" or "". */
  target: string;
  /** The node configs carry SideroLink to this Omni. */
  omni?: { apiUrl: string; joinToken: boolean } | null;
  /** The cluster secrets are on this device. */
  secrets: boolean;
  blockers: string[] | null;
  /** Files the bundle will hold. */
  contents: string[] | null;
  kubeconfig: boolean;
  exported?: HandoffExport | null;
  wiped: boolean;
  wipedAt?: string;
  canWipe: boolean;
}

export interface HandoffExportRequest {
  recipients: string[];
  passphrase?: string;
}

export interface HandoffWipeRequest {
  sha256: string;
  copied: boolean;
}

/** report.Machine. */
export interface ReportMachine {
  hostname: string;
  role: string;
  mac?: string;
  uuid?: string;
  serial?: string;
  ip?: string;
  state: string;
  error?: string;
  fingerprint?: string;
  confirmedBy?: string;
  confirmedAt?: string;
  finishedAt?: string;
  configSha256?: string;
  evidence?: NodeEvidence | null;
}

export interface AuditEvent {
  seq: number;
  time: string;
  actor: string;
  action: string;
  subject: string;
  detail: string;
  hash: string;
}

/** report.Report: the site's record for the lab's quality system. */
export interface SiteReport {
  format: string;
  generated: string;
  onramp: { version: string; commit?: string; machinery?: string };
  site: {
    name?: string;
    cluster: string;
    clusterId?: string;
    endpoint?: string;
    talosVersion?: string;
    kubernetesVersion?: string;
    handoffTarget?: string;
    omniApiUrl?: string;
    encryptionPcrs?: string;
  };
  visit: { actors: string[] | null; started?: string; finished?: string; bootstrapped: boolean; bootstrapNode?: string; healthy: boolean };
  counts: { machines: number; verified: number; notVerified: number; notInstalled: number };
  machines: ReportMachine[] | null;
  handoff?: {
    exportedAt?: string;
    exportedBy?: string;
    bundleSha256?: string;
    recipients?: string[] | null;
    passphrase?: boolean;
    wipedAt?: string;
    wipedBy?: string;
  } | null;
  audit: { events: number; headSeq: number; headHash: string; verified: boolean; problem?: string; trail: AuditEvent[] | null };
}

// ---- SecureBoot (Go: app/secureboot.go) --------------------------------------

/** secureboot.Fingerprints: SHA-256, 64 lower-case hex each. */
export interface SecureBootFingerprints {
  pk: string;
  kek: string;
  db: string;
  /** The db certificate's: the site's UKIs are signed with it. */
  ukiSigningKey: string;
  pcrSigningKey: string;
}

/** app.EnrollmentImage: the last built enrollment image. */
export interface EnrollmentImage {
  iso: string;
  url: string;
  esp: string;
  sha256: string;
  size: number;
  microsoftKept: boolean;
  builtAt: string;
}

/** app.SecureBootStatus. Event "secureboot:changed" carries it. */
export interface SecureBootStatus {
  vaultUnlocked: boolean;
  hasKeys: boolean;
  site?: string;
  owner?: string;
  fingerprints?: SecureBootFingerprints | null;
  image?: EnrollmentImage | null;
  /** The site's expected fingerprints (what Verify checks) are these keys'. */
  siteExpects: boolean;
  dropMicrosoftWarning: string;
}

/** app.EnrollMark: a machine the boot plan sends into key enrollment. Event
 * "secureboot:marks" carries one when the server takes a mark back by itself
 * (the machine reported SecureBoot on in maintenance mode). */
export interface EnrollMark {
  mac: string;
  enroll: boolean;
  /** Where the machine fetches the image, e.g. /assets/secureboot/enroll.iso. */
  url?: string;
  /** When it takes effect, in plain words. */
  note?: string;
}

export interface EnrollmentRequest {
  dropMicrosoft: boolean;
}

/** app.Playbook: how to put one vendor's servers into setup mode. */
export interface Playbook {
  vendor: string;
  match: string[] | null;
  enter: string;
  steps: string[] | null;
  notes?: string;
}
