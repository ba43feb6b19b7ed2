import { writable } from 'svelte/store';
import { vi } from 'vitest';
import { ApiError } from '../api/errors';
import { fakeHandoffApi, fakeReportApi } from './fakehandoff';
import { fakeSecureBootApi } from './fakesecureboot';
import type {
  Api,
  AuthState,
  ConnectionState,
  EventHandler,
  FoundServer,
  InstallNode,
  InstallRequest,
  InstallView,
  LabStatus,
  LabUpRequest,
  MachineView,
  NetbootStatus,
  NetInterface,
  Session,
  Settings,
  Site,
  SiteProblem,
  SiteView,
  StartRequest,
  SystemInfo,
} from '../api';

export const sampleInfo: SystemInfo = {
  version: 'v0.1.0',
  commit: 'abc1234',
  goVersion: 'go1.26.8',
  machineryVersion: 'v1.14.1',
  dataDir: '/var/lib/onramp',
  mode: 'web',
  root: false,
  capNetBindService: true,
  capNetRaw: false,
  labPrereqs: [
    { name: 'qemu', present: true, path: '/usr/bin/qemu-system-x86_64', hint: '' },
    { name: 'swtpm', present: false, path: '', hint: 'apt-get install swtpm' },
  ],
};

export function nic(name: string, over: Partial<NetInterface> = {}): NetInterface {
  return {
    name,
    mac: '52:54:00:12:34:56',
    addrs: [],
    up: true,
    mtu: 1500,
    wireless: false,
    loopback: false,
    virtual: false,
    cartHint: false,
    hint: '',
    ...over,
  };
}

/** An Api whose answers the test controls; events can be emitted by hand. */
export function fakeApi(over: {
  info?: () => Promise<SystemInfo>;
  interfaces?: () => Promise<NetInterface[]>;
  settings?: Settings;
  setError?: string;
  session?: Session;
  status?: NetbootStatus;
  machines?: MachineView[];
  startError?: string;
  probe?: () => Promise<FoundServer[]>;
  /** The saved site, if any. */
  site?: Site;
  /** Validation the fake Go side runs on a saved site. */
  siteProblems?: (s: Site) => SiteProblem[];
  /** YAML import: the test maps the text to a site (or throws). */
  parseYaml?: (yaml: string) => Site;
  exportYaml?: string;
  /** 'missing' answers like a build without the Lab service. */
  lab?: LabStatus | 'missing';
  labUpError?: string;
  /** The Install service's view; 'missing' answers like a build without it. */
  install?: InstallView | 'missing';
  /** Install.Start refuses with this (a bad request). */
  installStartError?: string;
} = {}) {
  let status: NetbootStatus = over.status ?? { running: false };
  const handlers = new Map<string, Set<EventHandler>>();
  let settings: Settings = over.settings ?? { theme: 'system', iface: '', netbootMode: 'auto' };
  let site: Site | undefined = over.site;
  let secrets = false;
  const view = (): SiteView => {
    const problems = site ? (over.siteProblems ?? (() => []))(site) : [];
    return {
      exists: !!site,
      ...(site ? { site: structuredClone(site) } : {}),
      problems,
      ready: !!site && problems.length === 0,
      secrets,
      pcr11OnlyExplanation: PCR11_TEXT,
    };
  };
  let lab: LabStatus | 'missing' = over.lab ?? { running: false, starting: false, machines: [], error: '', prereqsMissing: [] };
  const labCall = async (fn: (l: LabStatus) => LabStatus): Promise<LabStatus> => {
    if (lab === 'missing') throw new ApiError('call Lab.Status: no such method', 'Lab.Status', 404);
    lab = fn(lab);
    return lab;
  };
  let inst: InstallView | 'missing' = over.install ?? installView();
  const instCall = async (method: string, fn: (v: InstallView) => InstallView): Promise<InstallView> => {
    if (inst === 'missing') throw new ApiError(`call Install.${method}: no such method`, `Install.${method}`, 404);
    inst = fn(structuredClone(inst));
    return structuredClone(inst);
  };
  const setNode = (v: InstallView, mac: string, over: Partial<InstallNode>): InstallView => ({
    ...v,
    nodes: (v.nodes ?? []).map((n) => (n.mac === mac ? { ...n, ...over } : n)),
  });
  const connection = writable<ConnectionState>('connected');
  const auth = writable<AuthState>('ok');
  const api = {
    transport: 'web' as const,
    system: { info: vi.fn(over.info ?? (async () => sampleInfo)) },
    network: { interfaces: vi.fn(over.interfaces ?? (async () => [nic('eth0')])) },
    settings: {
      get: vi.fn(async () => settings),
      set: vi.fn(async (s: Settings) => {
        if (over.setError) throw new Error(over.setError);
        settings = { ...s };
        return settings;
      }),
    },
    shell: {
      session: vi.fn(async () => over.session ?? { mode: 'web' as const, authRequired: false, authenticated: false }),
      quit: vi.fn(async (_pin: string) => {}),
    },
    netboot: {
      status: vi.fn(async () => status),
      machines: vi.fn(async () => over.machines ?? []),
      probe: vi.fn(async (_iface: string) => (over.probe ? over.probe() : [])),
      start: vi.fn(async (req: StartRequest) => {
        if (over.startError) throw new Error(over.startError);
        status = { running: true, iface: req.iface, mode: req.mode, effective: 'isolated', startedAt: '2026-11-29T13:05:00Z' };
        return status;
      }),
      stop: vi.fn(async () => {
        status = { running: false, iface: status.iface };
        return status;
      }),
    },
    site: {
      get: vi.fn(async () => view()),
      save: vi.fn(async (s: Site) => {
        site = structuredClone(s);
        return view();
      }),
      import: vi.fn(async (yaml: string) => {
        if (!over.parseYaml) throw new Error('import site: yaml: line 1: did not find expected key');
        site = over.parseYaml(yaml);
        return view();
      }),
      export: vi.fn(async () => {
        if (!site) throw new Error('no site yet');
        return over.exportYaml ?? `cluster: ${site.cluster}\n`;
      }),
      generateSecrets: vi.fn(async () => {
        if (!site) throw new Error('fill in the site first');
        secrets = true;
        return view();
      }),
    },
    lab: {
      status: vi.fn(() => labCall((l) => l)),
      up: vi.fn((req: LabUpRequest) =>
        labCall((l) => {
          if (over.labUpError) throw new Error(over.labUpError);
          return {
            ...l,
            running: true,
            machines: Array.from({ length: req.machines }, (_, i) => ({
              name: `lab-${i + 1}`,
              mac: `52:54:00:00:00:0${i + 1}`,
              firmware: req.firmware,
              state: 'booting',
            })),
          };
        }),
      ),
      down: vi.fn(() => labCall((l) => ({ ...l, running: false, starting: false, machines: [] }))),
    },
    install: {
      status: vi.fn(() => instCall('Status', (v) => v)),
      start: vi.fn((req: InstallRequest) =>
        instCall('Start', (v) => {
          if (over.installStartError) throw new Error(over.installStartError);
          for (const t of req.machines) {
            const n = v.nodes?.find((x) => x.mac === t.mac);
            if (!n) throw new Error(`install: ${t.mac} is not a site machine`);
            if (n.fingerprint !== t.fingerprint) throw new Error(`install ${t.mac}: the fingerprint changed: rediscover`);
            v = setNode(v, t.mac, {
              state: 'running',
              step: 'config',
              message: 'Generating the machine config',
              steps: installSteps({ config: 'running' }),
            });
          }
          return v;
        }),
      ),
      cancel: vi.fn((mac: string) => instCall('Cancel', (v) => setNode(v, mac, { state: 'cancelled', message: 'Cancelled' }))),
      verify: vi.fn((mac: string) => instCall('Verify', (v) => v)),
    },
    handoff: fakeHandoffApi(),
    report: fakeReportApi(),
    secureboot: fakeSecureBootApi(),
    login: vi.fn(async (_pin: string) => {}),
    on: vi.fn((name: string, cb: EventHandler) => {
      const s = handlers.get(name) ?? new Set();
      s.add(cb);
      handlers.set(name, s);
      return () => void s.delete(cb);
    }),
    connection,
    auth,
    start: vi.fn(),
    stop: vi.fn(),
  } satisfies Api;
  const emit = (name: string, data: unknown) => {
    for (const h of handlers.get(name) ?? []) h(data);
  };
  return { api, emit, connection, auth };
}

export function machine(mac: string, over: Partial<MachineView> = {}): MachineView {
  return {
    mac,
    stage: 'dhcp',
    firstSeen: '2026-11-29T13:00:00Z',
    lastSeen: '2026-11-29T13:00:05Z',
    timeline: [{ time: '2026-11-29T13:00:00Z', kind: 'dhcp.discover', mac, arch: 'x86-64 UEFI' }],
    ...over,
  };
}

export const PCR11_TEXT = 'PCR 7 measures the SecureBoot variables (PK, KEK, db, dbx). A firmware update changes PCR 7.';

/** The sample site of talos/testdata/site.yaml, as Go sends it in JSON. */
export function sampleSite(): Site {
  return {
    name: 'St. Mary hospital, lab 2',
    cluster: 'stmary-lab2',
    talosVersion: 'v1.14.1',
    endpoint: 'https://10.77.0.10:6443',
    installDisk: { minSize: '100GB' },
    network: { nameservers: ['10.77.0.1'], ntpServers: ['10.77.0.1'] },
    registryMirrors: [{ registry: 'factory.talos.dev', endpoints: ['http://10.77.0.1:5000'] }],
    encryption: { pcrs: '7+11', recovery: {} },
    handoff: { target: 'bundle' },
    events: { sink: '10.77.0.1:8090', kmsg: 'tcp://10.77.0.1:8091' },
    machines: [
      {
        mac: '52:54:00:00:00:01',
        role: 'controlplane',
        hostname: 'cp-1',
        installDisk: { serial: 'S5GXNX0T123456' },
        addressing: { mode: 'static', address: '10.77.0.11/24', gateway: '10.77.0.1' },
        labels: { site: 'stmary', room: 'lab-2', assetTag: 'SM-000123' },
      },
      {
        uuid: '4c4c4544-0042-3510-8051-b4c04f4a4a31',
        role: 'worker',
        hostname: 'worker-1',
        installDisk: { wwid: 'naa.5000c500a1b2c3d4', model: 'SAMSUNG MZ7LH960' },
        addressing: {},
        labels: { site: 'stmary', room: 'lab-2', assetTag: 'SM-000124' },
      },
    ],
  };
}

/** A tiny stand-in for talos.Site.Problems: enough to drive the UI. */
export function simpleProblems(s: Site): SiteProblem[] {
  const ps: SiteProblem[] = [];
  if (!s.cluster) ps.push({ path: 'cluster', message: 'is required' });
  if (!s.endpoint) ps.push({ path: 'endpoint', message: 'is required (https://VIP-or-first-node:6443)' });
  else if (!/^https:\/\/[^/:]+:\d+$/.test(s.endpoint)) ps.push({ path: 'endpoint', message: `"${s.endpoint}" must look like https://host:6443` });
  (s.machines ?? []).forEach((m, i) => {
    if (!m.mac && !m.uuid) ps.push({ path: `machines[${i}]`, message: 'set mac or uuid to identify the machine' });
    if (!m.hostname) ps.push({ path: `machines[${i}].hostname`, message: 'is required' });
    if (m.installDisk?.minSize === 'lots') ps.push({ path: `machines[${i}].installDisk.minSize`, message: '"lots" is not a size' });
  });
  return ps;
}

const STEP_TITLES: Array<[string, string]> = [
  ['config', 'Generate config'],
  ['apply', 'Apply over pinned TLS'],
  ['install', 'Install and reboot'],
  ['bootstrap', 'Bootstrap etcd'],
  ['health', 'Kubernetes healthy'],
  ['verify', 'Verify SecureBoot and encryption'],
];

/** The fixed install steps, all pending unless given. */
export function installSteps(states: Partial<Record<string, string>> = {}, took: Partial<Record<string, number>> = {}): InstallNode['steps'] {
  return STEP_TITLES.map(([name, title]) => ({
    name,
    title,
    state: states[name] ?? 'pending',
    ...(took[name] ? { tookMs: took[name] } : {}),
  }));
}

export const FP1 = 'q2Xk7zQ0bW1dN3hT5mVc8aR9yL2pF6sJ4uE0iO7tA1k=';
export const UKI_FPR = 'a'.repeat(16) + 'b'.repeat(16) + 'c'.repeat(16) + 'd'.repeat(16);
export const PCR_FPR = '0123456789abcdef'.repeat(4);

export function installNode(mac: string, over: Partial<InstallNode> = {}): InstallNode {
  return {
    mac,
    hostname: 'cp-1',
    role: 'controlplane',
    ip: '10.77.0.20',
    serial: 'LAB-0001',
    secureBoot: 'on',
    tpm: 'present',
    fingerprint: FP1,
    ready: true,
    state: 'idle',
    steps: installSteps(),
    ...over,
  };
}

export function installView(over: Partial<InstallView> = {}): InstallView {
  return { nodes: [], blockers: [], bootstrapped: false, healthy: false, kubeconfig: false, ...over };
}
