// The SecureBoot step (Go: app/secureboot.go): the site's keys (kept in the
// vault), their fingerprints, the enrollment image and the per-vendor
// playbooks for setup mode. Read again when the vault or the keys change.

import { writable, type Readable } from 'svelte/store';
import { isMissingMethod, type Api, type Playbook, type SecureBootStatus } from '../api';

export interface SecureBootStoreState {
  /** null until the first answer; false when this build has no SecureBoot service. */
  available: boolean | null;
  status: SecureBootStatus | null;
  playbooks: Playbook[];
  error: string | null;
  busy: 'keys' | 'image' | 'expect' | null;
  actionError: string | null;
}

export interface SecureBootStore extends Readable<SecureBootStoreState> {
  load(): Promise<void>;
  generateKeys(): Promise<boolean>;
  buildImage(dropMicrosoft: boolean): Promise<boolean>;
  expectForSite(): Promise<boolean>;
  dispose(): void;
}

/** The playbook for an SMBIOS manufacturer, or the generic one (last). */
export function playbookFor(playbooks: readonly Playbook[], manufacturer: string): Playbook | undefined {
  const m = manufacturer.toLowerCase();
  return playbooks.find((p) => (p.match ?? []).some((x) => m.includes(x))) ?? playbooks.at(-1);
}

const msg = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export function createSecureBootStore(api: Api): SecureBootStore {
  const s = writable<SecureBootStoreState>({ available: null, status: null, playbooks: [], error: null, busy: null, actionError: null });
  let inflight: Promise<void> | null = null;
  function load(): Promise<void> {
    inflight ??= Promise.all([api.secureboot.status(), api.secureboot.playbooks()])
      .then(([status, playbooks]) => s.update((x) => ({ ...x, available: true, status, playbooks, error: null })))
      .catch((err: unknown) => {
        if (isMissingMethod(err)) s.update((x) => ({ ...x, available: false, error: null }));
        else s.update((x) => ({ ...x, error: msg(err) }));
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }
  async function act(kind: 'keys' | 'image' | 'expect', fn: () => Promise<SecureBootStatus>): Promise<boolean> {
    s.update((x) => ({ ...x, busy: kind, actionError: null }));
    try {
      const status = await fn();
      s.update((x) => ({ ...x, busy: null, status }));
      return true;
    } catch (err) {
      s.update((x) => ({ ...x, busy: null, actionError: msg(err) }));
      return false;
    }
  }
  const offs = [
    api.on('vault:changed', () => void load()),
    api.on('secureboot:changed', (st) => s.update((x) => ({ ...x, status: st as SecureBootStatus }))),
  ];
  return {
    subscribe: s.subscribe,
    load,
    generateKeys: () => act('keys', () => api.secureboot.generateKeys()),
    buildImage: (dropMicrosoft) => act('image', () => api.secureboot.buildEnrollmentImage({ dropMicrosoft })),
    expectForSite: () => act('expect', () => api.secureboot.expectForSite()),
    dispose() {
      for (const off of offs) off();
    },
  };
}
