import { writable, type Readable } from 'svelte/store';
import { installView, isMissingMethod, type Api, type InstallNode, type InstallTarget, type InstallView } from '../api';

export type InstallAction = 'start' | 'cancel' | 'verify';

export interface InstallStoreState {
  /** null until the first answer; false when this build has no Install service. */
  available: boolean | null;
  view: InstallView | null;
  /** Install.Status failed (other than "no such method"). */
  error: string | null;
  /** The call on its way, with the machines it is about. */
  busy: { action: InstallAction; macs: string[] } | null;
  /** The last call's failure, verbatim (a refused request, not a failed install). */
  actionError: { action: InstallAction; macs: string[]; message: string } | null;
  /**
   * Fingerprints the technician confirmed against each node's console, by
   * MAC. A confirmation only counts while the node still shows that same
   * fingerprint (see isConfirmed).
   */
  confirmed: Record<string, string>;
}

export interface InstallStore extends Readable<InstallStoreState> {
  load(): Promise<void>;
  /** Mark (or unmark) the fingerprint now shown for a node as compared with its console. */
  confirm(node: InstallNode, yes: boolean): void;
  /** Install these nodes, each pinned to the fingerprint the technician confirmed. */
  start(nodes: readonly InstallNode[]): Promise<boolean>;
  cancel(mac: string): Promise<boolean>;
  verify(mac: string): Promise<boolean>;
  dispose(): void;
}

const macKey = (mac: string): string => mac.toLowerCase();

/**
 * A confirmation is for one attempt: once a node's run ends (failed,
 * cancelled, installed...), "Install all confirmed" must not offer it again
 * until the technician confirms it anew.
 */
function afterRun(prev: InstallView | null, next: InstallView, confirmed: Record<string, string>): Record<string, string> {
  const was = new Map((prev?.nodes ?? []).map((n) => [macKey(n.mac), n.state]));
  let out = confirmed;
  for (const n of next.nodes ?? []) {
    const k = macKey(n.mac);
    if (was.get(k) === 'running' && n.state !== 'running' && k in out) {
      if (out === confirmed) out = { ...confirmed };
      delete out[k];
    }
  }
  return out;
}

/** The technician confirmed exactly the fingerprint the node shows now. */
export function isConfirmed(s: Pick<InstallStoreState, 'confirmed'>, n: InstallNode): boolean {
  return !!n.fingerprint && s.confirmed[macKey(n.mac)] === n.fingerprint;
}

/**
 * Install.*: the per-machine install and verification, kept live by
 * `install:changed` (the whole view after every change). A build without the
 * Install service answers "no such method": the store then says
 * `available: false`.
 */
export function createInstallStore(api: Api): InstallStore {
  const s = writable<InstallStoreState>({ available: null, view: null, error: null, busy: null, actionError: null, confirmed: {} });
  const off = api.on('install:changed', (data) => {
    if (data && typeof data === 'object' && 'nodes' in data) {
      s.update((x) => {
        const view = installView(data as InstallView);
        return { ...x, available: true, view, error: null, confirmed: afterRun(x.view, view, x.confirmed) };
      });
    }
  });
  let inflight: Promise<void> | null = null;
  const offResync = api.on('bus:resync', () => void load());

  function load(): Promise<void> {
    inflight ??= api.install
      .status()
      .then((v) => s.update((x) => ({ ...x, available: true, view: v, error: null })))
      .catch((err: unknown) => {
        if (isMissingMethod(err)) s.update((x) => ({ ...x, available: false, error: null }));
        else s.update((x) => ({ ...x, error: err instanceof Error ? err.message : String(err) }));
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  async function act(action: InstallAction, macs: string[], fn: () => Promise<InstallView>): Promise<boolean> {
    s.update((x) => ({ ...x, busy: { action, macs }, actionError: null }));
    try {
      const v = await fn();
      s.update((x) => ({ ...x, busy: null, view: v, available: true }));
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      s.update((x) => ({
        ...x,
        busy: null,
        actionError: { action, macs, message },
        available: isMissingMethod(err) ? false : x.available,
      }));
      return false;
    }
  }

  let current: InstallStoreState | undefined;
  const unsub = s.subscribe((v) => (current = v));

  return {
    subscribe: s.subscribe,
    load,
    confirm(node, yes) {
      s.update((x) => {
        const confirmed = { ...x.confirmed };
        if (yes && node.fingerprint) confirmed[macKey(node.mac)] = node.fingerprint;
        else delete confirmed[macKey(node.mac)];
        return { ...x, confirmed };
      });
    },
    start(nodes) {
      const st = current!;
      const machines: InstallTarget[] = nodes
        .filter((n) => isConfirmed(st, n))
        .map((n) => ({ mac: n.mac, fingerprint: st.confirmed[macKey(n.mac)]! }));
      if (machines.length === 0) return Promise.resolve(false);
      return act(
        'start',
        machines.map((m) => m.mac),
        () => api.install.start({ machines }),
      );
    },
    cancel: (mac) => act('cancel', [mac], () => api.install.cancel(mac)),
    verify: (mac) => act('verify', [mac], () => api.install.verify(mac)),
    dispose: () => {
      off();
      offResync();
      unsub();
    },
  };
}
