import { writable } from 'svelte/store';
import { vi } from 'vitest';
import type {
  Api,
  AuthState,
  ConnectionState,
  EventHandler,
  FoundServer,
  MachineView,
  NetbootStatus,
  NetInterface,
  Session,
  Settings,
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
} = {}) {
  let status: NetbootStatus = over.status ?? { running: false };
  const handlers = new Map<string, Set<EventHandler>>();
  let settings: Settings = over.settings ?? { theme: 'system', iface: '', netbootMode: 'auto' };
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
