// The Handoff step (Go: app/handoff.go). Writes the encrypted handoff bundle
// for the fleet manager's public keys or a passphrase, saves it through the
// browser (the ciphertext only: Go never sends plaintext), and, as a separate
// confirmed action, wipes the cluster secrets from this device. Follows
// "handoff:changed". A passphrase passes through on its way to Go and is
// never kept here.

import { writable, type Readable } from 'svelte/store';
import { handoffView, isMissingMethod, type Api, type HandoffExport, type HandoffView } from '../api';

export type HandoffAction = 'export' | 'bundle' | 'wipe';

export interface HandoffStoreState {
  /** null until the first answer; false when this build has no Handoff service. */
  available: boolean | null;
  view: HandoffView | null;
  error: string | null;
  busy: HandoffAction | null;
  actionError: { action: HandoffAction; message: string } | null;
  /** The bundle written in this session (without its data). */
  written: HandoffExport | null;
}

export interface HandoffStore extends Readable<HandoffStoreState> {
  load(): Promise<void>;
  /** Write the bundle for these keys (one per line) or this passphrase, and save it. */
  exportBundle(keys: string, passphrase?: string): Promise<HandoffExport | null>;
  /** Save the last bundle again. */
  saveAgain(): Promise<boolean>;
  wipe(sha256: string, copied: boolean): Promise<boolean>;
  clearError(): void;
  dispose(): void;
}

/** Public keys from the text box: one per line, blanks and # comments dropped. */
export function parseKeys(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/**
 * A quick word about one key line before Go checks it for real: '' when it
 * looks like a public key age can use.
 */
export function keyProblem(line: string): string {
  const l = line.trim();
  if (l.startsWith('AGE-SECRET-KEY-') || l.includes('PRIVATE KEY')) return 'This is a private key: enter the public key instead.';
  if (l.startsWith('age1pq1')) return 'Post-quantum age keys are not supported yet: use an age1… key.';
  if (/^age1[02-9ac-hj-np-z]{58}$/.test(l)) return '';
  if (l.startsWith('age1')) return 'This age key looks cut short: copy it whole.';
  if (/^(ssh-ed25519|ssh-rsa) AAAA[A-Za-z0-9+/=]+( .*)?$/.test(l)) return '';
  return 'Not a public key: use age1… or ssh-ed25519 / ssh-rsa.';
}

/** Offer base64 bytes as a file download (browser and desktop webview). */
export function downloadBase64(name: string, b64: string, doc: Document = document): void {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  const a = doc.createElement('a');
  a.href = url;
  a.download = name;
  a.style.display = 'none';
  doc.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** "3f2a 91c0 …": a hash in groups of four, easier to compare by eye. */
export function groupHash(h: string): string {
  return (h.match(/.{1,4}/g) ?? []).join(' ');
}

function withoutData(e: HandoffExport): HandoffExport {
  const { data: _data, ...rest } = e;
  return rest;
}

export function createHandoffStore(api: Api, save: (name: string, b64: string) => void = downloadBase64): HandoffStore {
  const s = writable<HandoffStoreState>({ available: null, view: null, error: null, busy: null, actionError: null, written: null });
  const off = api.on('handoff:changed', (data) => {
    if (data && typeof data === 'object' && 'blockers' in data) {
      s.update((x) => ({ ...x, available: true, view: handoffView(data as HandoffView), error: null }));
    }
  });
  let inflight: Promise<void> | null = null;

  function load(): Promise<void> {
    inflight ??= api.handoff
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

  async function act<T>(action: HandoffAction, fn: () => Promise<T>): Promise<T | null> {
    s.update((x) => ({ ...x, busy: action, actionError: null }));
    try {
      const out = await fn();
      s.update((x) => ({ ...x, busy: null }));
      return out;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      s.update((x) => ({ ...x, busy: null, actionError: { action, message }, available: isMissingMethod(err) ? false : x.available }));
      return null;
    }
  }

  return {
    subscribe: s.subscribe,
    load,
    async exportBundle(keys, passphrase) {
      const req = passphrase ? { recipients: [], passphrase } : { recipients: parseKeys(keys) };
      const e = await act('export', () => api.handoff.export(req));
      if (!e) return null;
      if (e.data) save(e.name, e.data);
      const written = withoutData(e);
      s.update((x) => ({ ...x, written }));
      await load();
      return written;
    },
    async saveAgain() {
      const e = await act('bundle', () => api.handoff.bundle());
      if (!e) return false;
      if (e.data) save(e.name, e.data);
      return true;
    },
    async wipe(sha256, copied) {
      const v = await act('wipe', () => api.handoff.wipe({ sha256, copied }));
      if (!v) return false;
      s.update((x) => ({ ...x, view: v }));
      return true;
    },
    clearError: () => s.update((x) => ({ ...x, actionError: null })),
    dispose: off,
  };
}
