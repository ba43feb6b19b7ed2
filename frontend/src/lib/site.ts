// The Site step's form model: a draft talos.Site the technician edits, made
// whole for the form (every nested object present) and cleaned before it is
// sent, and the mapping of Go's problem paths ("machines[2].installDisk.serial")
// to the form field that shows them.

import type { DiskSelector, Site, SiteMachine, SiteProblem } from '../api';

export const DISK_FIELDS = ['serial', 'wwid', 'model', 'devPath', 'minSize', 'maxSize'] as const;
export type DiskField = (typeof DISK_FIELDS)[number];

export const DISK_LABELS: Record<DiskField, string> = {
  serial: 'Serial',
  wwid: 'WWID',
  model: 'Model',
  devPath: 'Device path',
  minSize: 'Min size',
  maxSize: 'Max size',
};

/** A site with nothing filled in, for a first visit. */
export function emptySite(): Site {
  return normalizeSite({
    cluster: '',
    endpoint: '',
    network: {},
    encryption: { pcrs: '7+11', recovery: {} },
    handoff: { target: 'bundle' },
    events: {},
    machines: [],
  });
}

export function emptyMachine(role: SiteMachine['role'] = 'worker'): SiteMachine {
  return normalizeMachine({ role, hostname: '', addressing: { mode: 'dhcp' }, labels: {} });
}

function normalizeMachine(m: SiteMachine): SiteMachine {
  return {
    ...m,
    mac: m.mac ?? '',
    uuid: m.uuid ?? '',
    role: m.role ?? '',
    hostname: m.hostname ?? '',
    interface: m.interface ?? '',
    installDisk: { ...m.installDisk },
    addressing: { ...m.addressing, address: m.addressing?.address ?? '', gateway: m.addressing?.gateway ?? '' },
    labels: { site: '', room: '', assetTag: '', ...m.labels },
  };
}

/**
 * normalizeSite returns a deep copy with every nested object the form binds
 * to present (Go omits empty ones).
 */
export function normalizeSite(s: Site): Site {
  const c = jsonClone(s);
  return {
    ...c,
    name: c.name ?? '',
    cluster: c.cluster ?? '',
    endpoint: c.endpoint ?? '',
    talosVersion: c.talosVersion ?? '',
    kubernetesVersion: c.kubernetesVersion ?? '',
    installer: c.installer ?? '',
    schematic: c.schematic ?? '',
    installDisk: { ...c.installDisk },
    network: { ...c.network, nameservers: c.network?.nameservers ?? [], ntpServers: c.network?.ntpServers ?? [] },
    encryption: { pcrs: c.encryption?.pcrs || '7+11', recovery: { type: '', kmsEndpoint: '', ...c.encryption?.recovery } },
    handoff: {
      ...c.handoff,
      target: c.handoff?.target || 'none',
      omni: { apiUrl: '', joinToken: '', ...c.handoff?.omni },
    },
    events: { sink: '', kmsg: '', ...c.events },
    secureBoot: { ukiSigningKeyFingerprint: '', pcrSigningKeyFingerprint: '', ...c.secureBoot },
    machines: (c.machines ?? []).map(normalizeMachine),
  };
}

/** Drop empty strings from a flat record (Go treats absent and "" alike). */
function compact<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === '' || v === undefined || v === null) continue;
    out[k] = v;
  }
  return out as T;
}

function cleanDisk(d: DiskSelector | undefined): DiskSelector | undefined {
  if (!d) return undefined;
  const c = compact(d);
  return Object.keys(c).length ? c : undefined;
}

/**
 * cleanSite is what is sent to Site.Save: empty selectors and blocks are left
 * out (an empty installDisk would be a problem of its own), addresses of a
 * DHCP machine are dropped (the form hides them), and "none" handoff is "".
 */
export function cleanSite(s: Site): Site {
  const c = jsonClone(s);
  const out: Site = {
    ...compact({
      name: c.name,
      cluster: c.cluster,
      talosVersion: c.talosVersion,
      kubernetesVersion: c.kubernetesVersion,
      endpoint: c.endpoint,
      installer: c.installer,
      schematic: c.schematic,
    }),
    cluster: c.cluster ?? '',
    endpoint: c.endpoint ?? '',
    network: {},
    encryption: { recovery: compact(c.encryption?.recovery ?? {}) },
    handoff: {},
    events: compact(c.events ?? {}),
    machines: [],
  };
  const disk = cleanDisk(c.installDisk);
  if (disk) out.installDisk = disk;
  const sb = compact({
    ukiSigningKeyFingerprint: c.secureBoot?.ukiSigningKeyFingerprint?.trim(),
    pcrSigningKeyFingerprint: c.secureBoot?.pcrSigningKeyFingerprint?.trim(),
  });
  if (Object.keys(sb).length) out.secureBoot = sb;
  const n = c.network ?? {};
  if (n.nameservers?.length) out.network.nameservers = n.nameservers;
  if (n.ntpServers?.length) out.network.ntpServers = n.ntpServers;
  if (n.vlan) out.network.vlan = Number(n.vlan);
  if (n.bond) out.network.bond = n.bond;
  if (c.registryMirrors?.length) out.registryMirrors = c.registryMirrors;
  if (c.encryption?.pcrs) out.encryption.pcrs = c.encryption.pcrs;
  const target = c.handoff?.target;
  if (target && target !== 'none') out.handoff.target = target;
  const omni = c.handoff?.omni;
  if (omni && (omni.apiUrl || omni.joinToken || target === 'omni')) out.handoff.omni = { apiUrl: omni.apiUrl ?? '', joinToken: omni.joinToken ?? '' };
  out.machines = (c.machines ?? []).map((m) => {
    const a = m.addressing ?? {};
    const mm: SiteMachine = {
      ...compact({ mac: m.mac?.trim(), uuid: m.uuid?.trim(), interface: m.interface }),
      role: m.role,
      hostname: m.hostname,
      addressing: a.mode === 'static' ? compact(a) : compact({ mode: a.mode }),
      labels: compact(m.labels ?? {}),
    };
    const d = cleanDisk(m.installDisk);
    if (d) mm.installDisk = d;
    return mm;
  });
  return out;
}

/** A deep copy that also works on Svelte $state proxies (structuredClone does not). */
export function jsonClone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** True when two sites would save the same. */
export function sameSite(a: Site, b: Site): boolean {
  return JSON.stringify(cleanSite(a)) === JSON.stringify(cleanSite(b));
}

export function splitList(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

export function joinList(list: readonly string[] | undefined): string {
  return (list ?? []).join(', ');
}

// ---- problem paths → fields ------------------------------------------------

/** Site-level fields the form shows, by their Go path. */
export const SITE_FIELDS: readonly string[] = [
  'name',
  'cluster',
  'endpoint',
  'talosVersion',
  'kubernetesVersion',
  'installer',
  'schematic',
  'installDisk',
  ...DISK_FIELDS.map((f) => `installDisk.${f}`),
  'network.nameservers',
  'network.ntpServers',
  'network.vlan',
  'encryption.pcrs',
  'encryption.recovery.type',
  'encryption.recovery.kmsEndpoint',
  'handoff.target',
  'handoff.omni',
  'handoff.omni.apiUrl',
  'handoff.omni.joinToken',
  'events.sink',
  'events.kmsg',
  'secureBoot',
  'secureBoot.ukiSigningKeyFingerprint',
  'secureBoot.pcrSigningKeyFingerprint',
  'machines',
];

/** Per-machine fields, relative to machines[i] ('' is the machine itself). */
export const MACHINE_FIELDS: readonly string[] = [
  '',
  'mac',
  'uuid',
  'role',
  'hostname',
  'interface',
  'installDisk',
  ...DISK_FIELDS.map((f) => `installDisk.${f}`),
  'addressing',
  'addressing.mode',
  'addressing.address',
  'addressing.gateway',
  'labels.site',
  'labels.room',
  'labels.assetTag',
];

export function machinePath(i: number, field = ''): string {
  return field ? `machines[${i}].${field}` : `machines[${i}]`;
}

/** Every field path the form can show for a site with n machines. */
export function formFields(machines: number): Set<string> {
  const out = new Set(SITE_FIELDS);
  for (let i = 0; i < machines; i++) for (const f of MACHINE_FIELDS) out.add(machinePath(i, f));
  return out;
}

/** Drop the last path segment: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ''. */
export function parentPath(path: string): string {
  const m = /^(.*?)(\[\d+\]|\.[^.[\]]+)$/.exec(path);
  return m ? (m[1] ?? '') : '';
}

/**
 * fieldFor finds the form field that shows a problem at path: the path
 * itself, else its nearest parent the form has ("network.nameservers[1]" →
 * "network.nameservers"). null when nothing on the form matches (the problem
 * is then only in the summary).
 */
export function fieldFor(path: string, fields: ReadonlySet<string>): string | null {
  for (let p = path; p; p = parentPath(p)) if (fields.has(p)) return p;
  return null;
}

/** Problems grouped by the field that shows them; unplaced ones under ''. */
export function placeProblems(problems: readonly SiteProblem[], fields: ReadonlySet<string>): Map<string, SiteProblem[]> {
  const out = new Map<string, SiteProblem[]>();
  for (const p of problems) {
    const f = fieldFor(p.path, fields) ?? '';
    const list = out.get(f) ?? [];
    list.push(p);
    out.set(f, list);
  }
  return out;
}

/** Problems anywhere inside machines[i]. */
export function machineProblems(problems: readonly SiteProblem[], i: number): SiteProblem[] {
  const p = machinePath(i);
  return problems.filter((x) => x.path === p || x.path.startsWith(p + '.') || x.path.startsWith(p + '['));
}

const SITE_LABELS: Record<string, string> = {
  name: 'Site name',
  cluster: 'Cluster name',
  endpoint: 'API endpoint',
  talosVersion: 'Talos version',
  kubernetesVersion: 'Kubernetes version',
  installer: 'Installer image',
  schematic: 'Schematic',
  installDisk: 'Default install disk',
  'network.nameservers': 'DNS servers',
  'network.ntpServers': 'NTP servers',
  'network.vlan': 'VLAN',
  'network.bond': 'Bond',
  registryMirrors: 'Registry mirrors',
  'encryption.pcrs': 'Encryption PCR policy',
  'encryption.recovery.type': 'Recovery key',
  'encryption.recovery.kmsEndpoint': 'KMS endpoint',
  'handoff.target': 'Handoff',
  'handoff.omni': 'Omni',
  'handoff.omni.apiUrl': 'Omni API URL',
  'handoff.omni.joinToken': 'Omni join token',
  'events.sink': 'Event sink',
  'events.kmsg': 'Kernel log receiver',
  secureBoot: 'SecureBoot image keys',
  'secureBoot.ukiSigningKeyFingerprint': 'UKI signing-key fingerprint',
  'secureBoot.pcrSigningKeyFingerprint': 'PCR signing-key fingerprint',
  machines: 'Machines',
};

const MACHINE_LABELS: Record<string, string> = {
  mac: 'MAC',
  uuid: 'UUID',
  role: 'Role',
  hostname: 'Hostname',
  interface: 'Interface',
  installDisk: 'Install disk',
  addressing: 'Addressing',
  'addressing.mode': 'Addressing',
  'addressing.address': 'Address',
  'addressing.gateway': 'Gateway',
  'labels.site': 'Site label',
  'labels.room': 'Room',
  'labels.assetTag': 'Asset tag',
};

/** A problem path in words: "Machine 1 (cp-1) · Hostname". */
export function pathLabel(path: string, site: Site | undefined): string {
  const m = /^machines\[(\d+)\](?:\.(.*))?$/.exec(path);
  if (m) {
    const i = Number(m[1]);
    const mach = site?.machines?.[i];
    const name = mach ? machineName(mach) : '';
    const head = `Machine ${i + 1}${name ? ` (${name})` : ''}`;
    const rest = m[2] ?? '';
    if (!rest) return head;
    const disk = /^installDisk\.(\w+)$/.exec(rest);
    const label = disk ? `Install disk ${DISK_LABELS[disk[1] as DiskField] ?? disk[1]}` : (MACHINE_LABELS[rest] ?? rest);
    return `${head} · ${label}`;
  }
  const disk = /^installDisk\.(\w+)$/.exec(path);
  if (disk) return `Default install disk ${DISK_LABELS[disk[1] as DiskField] ?? disk[1]}`;
  for (let p = path; p; p = parentPath(p)) {
    const l = SITE_LABELS[p];
    if (l) return p === path ? l : `${l} (${suffixWords(path.slice(p.length))})`;
  }
  return path;
}

/** "[0].endpoints[1]" → "#1 endpoints #2". */
function suffixWords(rest: string): string {
  return (rest.match(/\[\d+\]|[^.[\]]+/g) ?? []).map((t) => (t.startsWith('[') ? `#${Number(t.slice(1, -1)) + 1}` : t)).join(' ');
}

/** How a machine is called in lists: hostname, else MAC or UUID. */
export function machineName(m: SiteMachine): string {
  return m.hostname || m.mac || m.uuid || '';
}

/** The disk selector in words: "serial S5GX…, ≥ 100GB". */
export function diskSummary(d: DiskSelector | undefined): string {
  if (!d) return '';
  const parts: string[] = [];
  if (d.serial) parts.push(`serial ${d.serial}`);
  if (d.wwid) parts.push(`WWID ${d.wwid}`);
  if (d.model) parts.push(d.model);
  if (d.devPath) parts.push(d.devPath);
  if (d.minSize) parts.push(`≥ ${d.minSize}`);
  if (d.maxSize) parts.push(`≤ ${d.maxSize}`);
  return parts.join(', ');
}

/** DOM id of the element showing a field. */
export function fieldId(path: string): string {
  return 'f-' + path.replace(/[^A-Za-z0-9]+/g, '-');
}
