import { writable, type Readable } from 'svelte/store';
import type { Api, FoundServer, MachineView, NetbootMode, NetbootStatus } from '../api';
import { resource, type Resource } from './resource';

export interface NetbootStore extends Resource<NetbootStatus> {
  /** True while a start or stop is on its way. */
  busy: Readable<boolean>;
  actionError: Readable<string | null>;
  start(iface: string, mode: NetbootMode): Promise<boolean>;
  stop(): Promise<boolean>;
  dispose(): void;
}

/** Netboot.Status, kept live by `netboot:status` events. */
export function createNetbootStore(api: Api): NetbootStore {
  const r = resource(() => api.netboot.status());
  const busy = writable(false);
  const actionError = writable<string | null>(null);
  const off = api.on('netboot:status', (data) => {
    if (data && typeof data === 'object' && 'running' in data) r.put(data as NetbootStatus);
  });

  async function act(fn: () => Promise<NetbootStatus>): Promise<boolean> {
    busy.set(true);
    actionError.set(null);
    try {
      r.put(await fn());
      return true;
    } catch (err) {
      actionError.set(err instanceof Error ? err.message : String(err));
      return false;
    } finally {
      busy.set(false);
    }
  }

  return {
    ...r,
    busy,
    actionError,
    start: (iface, mode) => act(() => api.netboot.start({ iface, mode, allowForeign: false })),
    stop: () => act(() => api.netboot.stop()),
    dispose: off,
  };
}

export interface ProbeState {
  running: boolean;
  iface: string;
  found: FoundServer[] | null;
  error: string | null;
}

/** Netboot.Probe: is another DHCP server on the cart network? */
export function createProbeStore(api: Api): Readable<ProbeState> & { probe(iface: string): Promise<void> } {
  const s = writable<ProbeState>({ running: false, iface: '', found: null, error: null });
  return {
    subscribe: s.subscribe,
    async probe(iface: string) {
      s.set({ running: true, iface, found: null, error: null });
      try {
        s.set({ running: false, iface, found: await api.netboot.probe(iface), error: null });
      } catch (err) {
        s.set({ running: false, iface, found: null, error: err instanceof Error ? err.message : String(err) });
      }
    },
  };
}

/** Replace or add a machine by MAC, keeping first-seen order. */
export function upsertMachine(list: readonly MachineView[], m: MachineView): MachineView[] {
  const i = list.findIndex((x) => x.mac === m.mac);
  if (i >= 0) {
    const out = [...list];
    out[i] = m;
    return out;
  }
  return [...list, m].sort((a, b) => Date.parse(a.firstSeen) - Date.parse(b.firstSeen));
}

export type MachinesStore = Resource<MachineView[]> & { dispose(): void };

/** Netboot.Machines, updated live from `netboot:machine` events. */
export function createMachinesStore(api: Api): MachinesStore {
  const r = resource(() => api.netboot.machines());
  let current: MachineView[] = [];
  const unsub = r.subscribe((s) => (current = s.data ?? []));
  const off = api.on('netboot:machine', (data) => {
    if (data && typeof data === 'object' && 'mac' in data) r.put(upsertMachine(current, data as MachineView));
  });
  // The Go bus dropped events for this client (it fell behind a burst):
  // read the whole list again rather than show a stale picture.
  const offResync = api.on('bus:resync', () => void r.load());
  return {
    ...r,
    dispose: () => {
      off();
      offResync();
      unsub();
    },
  };
}

/** The boot path a machine walks, for the progress chips. */
export const STAGES = [
  { id: 'dhcp', label: 'DHCP' },
  { id: 'tftp', label: 'TFTP' },
  { id: 'http', label: 'HTTP' },
  { id: 'maintenance', label: 'Talos maintenance' },
] as const;

/** Stages after the boot path (talos.event MachineStatusEvent, contract A). */
export const AFTER_BOOT: Readonly<Record<string, { label: string; done: boolean }>> = {
  installing: { label: 'Installing', done: false },
  running: { label: 'Running Talos', done: true },
};

/** A machine stage in words, for badges and chips. */
export function stageLabel(stage: string): string {
  return STAGES.find((s) => s.id === stage)?.label ?? AFTER_BOOT[stage]?.label ?? stage;
}

/** How far along the boot path: index into STAGES (-1 if not on it). */
export function stageIndex(stage: string): number {
  return STAGES.findIndex((s) => s.id === stage);
}

/** Plain words for a netboot mode. */
export function modeWords(mode: string | undefined): string {
  switch (mode) {
    case 'isolated':
      return 'Onramp hands out addresses (10.77.0.0/24).';
    case 'proxy':
      return 'The site DHCP gives addresses; Onramp adds boot info.';
    case 'auto':
      return 'Probes for another DHCP server, then picks.';
    default:
      return mode ?? '';
  }
}
