import { writable, type Readable } from 'svelte/store';
import { isMissingMethod, labStatus, type Api, type LabStatus, type LabUpRequest } from '../api';

export interface LabState {
  /** null until the first answer; false when this build has no Lab service. */
  available: boolean | null;
  status: LabStatus | null;
  /** Lab.Status failed (other than "no such method"). */
  error: string | null;
  busy: 'up' | 'down' | null;
  actionError: string | null;
}

export interface LabStore extends Readable<LabState> {
  load(): Promise<void>;
  up(req: LabUpRequest): Promise<boolean>;
  down(): Promise<boolean>;
  dispose(): void;
}

/**
 * Lab.*: the virtual lab (QEMU machines on a bridge Onramp serves). A build
 * without the Lab service answers "no such method": the store then says
 * `available: false` and the UI hides the lab.
 */
export function createLabStore(api: Api): LabStore {
  const s = writable<LabState>({ available: null, status: null, error: null, busy: null, actionError: null });
  const off = api.on('lab:status', (data) => {
    if (data && typeof data === 'object' && 'running' in data) {
      s.update((x) => ({ ...x, available: true, status: labStatus(data as LabStatus), error: null }));
    }
  });
  let inflight: Promise<void> | null = null;

  function load(): Promise<void> {
    inflight ??= api.lab
      .status()
      .then((st) => s.update((x) => ({ ...x, available: true, status: st, error: null })))
      .catch((err: unknown) => {
        if (isMissingMethod(err)) s.update((x) => ({ ...x, available: false, error: null }));
        else s.update((x) => ({ ...x, error: err instanceof Error ? err.message : String(err) }));
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  async function act(kind: 'up' | 'down', fn: () => Promise<LabStatus>): Promise<boolean> {
    s.update((x) => ({ ...x, busy: kind, actionError: null }));
    try {
      const st = await fn();
      s.update((x) => ({ ...x, busy: null, status: st, available: true }));
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      s.update((x) => ({ ...x, busy: null, actionError: message, available: isMissingMethod(err) ? false : x.available }));
      return false;
    }
  }

  return {
    subscribe: s.subscribe,
    load,
    up: (req) => act('up', () => api.lab.up(req)),
    down: () => act('down', () => api.lab.down()),
    dispose: off,
  };
}

/** Plain words and tone for a lab machine's state. */
export function labStateView(state: string): { tone: 'ok' | 'warn' | 'bad' | 'accent' | ''; label: string } {
  const s = state.toLowerCase();
  if (s.startsWith('failed')) return { tone: 'bad', label: 'Failed' };
  switch (s) {
    case 'booting':
      return { tone: 'accent', label: 'Booting' };
    case 'maintenance':
      return { tone: 'ok', label: 'Maintenance mode' };
    case 'installing':
      return { tone: 'accent', label: 'Installing' };
    case 'installed':
      return { tone: 'ok', label: 'Installed' };
    case 'stopped':
      return { tone: '', label: 'Stopped' };
    default:
      return { tone: '', label: state || 'Unknown' };
  }
}
