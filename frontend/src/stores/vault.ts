// The secrets vault (Go: app/vault.go, contract C). The vault keeps the
// cluster's secrets encrypted at rest behind a passphrase; this store holds
// its status, runs Create/Unlock/Lock/ChangePassphrase, and follows the
// "vault:changed" event (another tablet unlocked it, say).
//
// Passphrases pass through here on their way to Go and are never kept in a
// store, logged, or put into an error message.

import { writable, type Readable } from 'svelte/store';
import { detectTransport, type Api, type EventHandler, type Unsubscribe } from '../api';
import { createWebTransport } from '../api/web';
import type { WailsWindow } from '../api/wails';

/** Go's VaultStatus. */
export interface VaultStatus {
  exists: boolean;
  unlocked: boolean;
}

/** The Vault service's calls (one per Go method) and its events. */
export interface VaultApi {
  status(): Promise<VaultStatus>;
  create(passphrase: string): Promise<VaultStatus>;
  unlock(passphrase: string): Promise<VaultStatus>;
  lock(): Promise<VaultStatus>;
  changePassphrase(oldPassphrase: string, newPassphrase: string): Promise<VaultStatus>;
  on(event: string, cb: EventHandler): Unsubscribe;
}

/** How a transport calls Go: Transport.call's shape. */
export type CallFn = <T>(service: string, method: string, args: unknown[]) => Promise<T>;

/** A VaultApi from a call function and an event subscription. */
export function createVaultApi(call: CallFn, on: VaultApi['on']): VaultApi {
  return {
    status: () => call<VaultStatus>('Vault', 'Status', []),
    create: (p) => call<VaultStatus>('Vault', 'Create', [p]),
    unlock: (p) => call<VaultStatus>('Vault', 'Unlock', [p]),
    lock: () => call<VaultStatus>('Vault', 'Lock', []),
    changePassphrase: (o, n) => call<VaultStatus>('Vault', 'ChangePassphrase', [o, n]),
    on,
  };
}

/**
 * The VaultApi for the running app. The app-wide Api has no `vault` group
 * (yet): calls go through a second, call-only transport of the same kind
 * (its event stream is never started; events come from `api.on`). On the
 * web it does not wait for a PIN: a 401 is an error the panel shows, and
 * the app's own PIN screen handles the login.
 */
export function defaultVaultApi(api: Api & { vault?: Omit<VaultApi, 'on'> }): VaultApi {
  const on = api.on.bind(api);
  if (api.vault) return { ...api.vault, on };
  const w = typeof window === 'undefined' ? undefined : (window as WailsWindow & Window);
  const t = api.transport === 'wails' ? detectTransport(w) : createWebTransport({ authRetries: 0, EventSource: undefined });
  return createVaultApi((service, method, args) => t.call(service, method, args), on);
}

// ---- passphrase rules (the floor Go enforces, store.CheckPassphrase) -------

export const MIN_PASSPHRASE = 12;

const COMMON = ['password', 'passphrase', '123456', 'qwerty', 'azerty', 'abcdef', 'letmein', 'onramp', 'talos', 'secret', 'admin'];

export type Strength = 'empty' | 'refused' | 'fair' | 'good' | 'strong';

export interface PassphraseHint {
  strength: Strength;
  /** Go will accept it. */
  ok: boolean;
  /** Plain words for under the field. */
  message: string;
}

function isSequence(s: string): boolean {
  const cs = [...s].map((c) => c.codePointAt(0) ?? 0);
  let up = true;
  let down = true;
  for (let i = 1; i < cs.length; i++) {
    up = up && cs[i] === (cs[i - 1] ?? 0) + 1;
    down = down && cs[i] === (cs[i - 1] ?? 0) - 1;
  }
  return up || down;
}

/**
 * passphraseHint mirrors Go's refusal rules (so the technician learns before
 * pressing the button) and grades what passes: length and variety. It is a
 * hint; Go decides.
 */
export function passphraseHint(p: string): PassphraseHint {
  const len = [...p].length;
  if (p.trim() === '') return { strength: 'empty', ok: false, message: `Use at least ${MIN_PASSPHRASE} characters; a few unrelated words work well.` };
  if (len < MIN_PASSPHRASE) return { strength: 'refused', ok: false, message: `Too short: ${len} of at least ${MIN_PASSPHRASE} characters.` };
  const lower = p.toLowerCase();
  const distinct = new Set([...lower].filter((c) => !/\s/.test(c)));
  if (distinct.size < 5) return { strength: 'refused', ok: false, message: 'Too repetitive: use more different characters.' };
  for (const w of COMMON) {
    if (lower.includes(w) && [...lower.split(w).join('')].length < MIN_PASSPHRASE - 4) {
      return { strength: 'refused', ok: false, message: `Mostly a well-known word ("${w}"): add words of your own.` };
    }
  }
  if (isSequence(lower)) return { strength: 'refused', ok: false, message: 'A keyboard or number sequence: choose something else.' };
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(p)).length;
  const words = p.split(/[\s\-_.,;:]+/).filter((x) => x.length >= 3).length;
  if (len >= 20 && (classes >= 2 || words >= 4)) return { strength: 'strong', ok: true, message: 'Strong passphrase.' };
  if (len >= 16 || classes >= 3) return { strength: 'good', ok: true, message: 'Good. Longer is stronger.' };
  return { strength: 'fair', ok: true, message: 'Accepted, but short: a few more words make it much harder to guess.' };
}

/** Go's error text in the words the panel shows. */
export function vaultMessage(raw: string): string {
  const m = raw.match(/too many wrong passphrases: try again in (\S+)/i);
  if (m) return `Too many wrong passphrases. Try again in ${m[1]}.`;
  if (/wrong passphrase/i.test(raw)) return 'Wrong passphrase.';
  const weak = raw.match(/passphrase too weak: (.*)$/i);
  if (weak) return `Passphrase too weak: ${weak[1]}.`;
  if (/no vault yet/i.test(raw)) return 'There is no vault yet: create one.';
  if (/already exists/i.test(raw)) return 'A vault already exists: unlock it.';
  return raw;
}

// ---- the store -----------------------------------------------------------

export type VaultAction = 'create' | 'unlock' | 'lock' | 'change';

export interface VaultState {
  status: VaultStatus | null;
  loading: boolean;
  /** Status could not be read (e.g. another Onramp holds the database). */
  error: string | null;
  busy: VaultAction | null;
  /** The last action's failure, in plain words. */
  actionError: { action: VaultAction; message: string } | null;
}

export interface VaultStore extends Readable<VaultState> {
  load(): Promise<void>;
  /** Resolves true when Go created (and unlocked) the vault. */
  create(passphrase: string, confirmation: string): Promise<boolean>;
  unlock(passphrase: string): Promise<boolean>;
  lock(): Promise<boolean>;
  changePassphrase(oldPassphrase: string, newPassphrase: string, confirmation: string): Promise<boolean>;
  clearError(): void;
  dispose(): void;
}

function isStatus(d: unknown): d is VaultStatus {
  return !!d && typeof d === 'object' && typeof (d as VaultStatus).exists === 'boolean' && typeof (d as VaultStatus).unlocked === 'boolean';
}

const msgOf = (err: unknown): string => vaultMessage(err instanceof Error ? err.message : String(err));

export function createVaultStore(api: VaultApi): VaultStore {
  const state = writable<VaultState>({ status: null, loading: false, error: null, busy: null, actionError: null });
  let inflight: Promise<void> | null = null;

  const off = api.on('vault:changed', (d) => {
    if (isStatus(d)) state.update((s) => ({ ...s, status: { exists: d.exists, unlocked: d.unlocked }, error: null }));
  });

  function load(): Promise<void> {
    if (inflight) return inflight;
    state.update((s) => ({ ...s, loading: true }));
    inflight = api
      .status()
      .then((st) => state.update((s) => ({ ...s, status: st, error: null, loading: false })))
      .catch((err: unknown) => state.update((s) => ({ ...s, error: msgOf(err), loading: false })))
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  function refuse(action: VaultAction, message: string): false {
    state.update((s) => ({ ...s, actionError: { action, message } }));
    return false;
  }

  async function act(action: VaultAction, fn: () => Promise<VaultStatus>): Promise<boolean> {
    state.update((s) => ({ ...s, busy: action, actionError: null }));
    try {
      const st = await fn();
      state.update((s) => ({ ...s, status: isStatus(st) ? st : s.status, busy: null, error: null }));
      return true;
    } catch (err) {
      state.update((s) => ({ ...s, busy: null, actionError: { action, message: msgOf(err) } }));
      // The answer to a failed call carries no status: read it again.
      void load();
      return false;
    }
  }

  return {
    subscribe: state.subscribe,
    load,
    create: (p, confirmation) => {
      if (p !== confirmation) return Promise.resolve(refuse('create', 'The two passphrases differ.'));
      const h = passphraseHint(p);
      if (!h.ok) return Promise.resolve(refuse('create', h.message));
      return act('create', () => api.create(p));
    },
    unlock: (p) => {
      if (p === '') return Promise.resolve(refuse('unlock', 'Type the passphrase.'));
      return act('unlock', () => api.unlock(p));
    },
    lock: () => act('lock', () => api.lock()),
    changePassphrase: (o, n, confirmation) => {
      if (o === '') return Promise.resolve(refuse('change', 'Type the current passphrase.'));
      if (n !== confirmation) return Promise.resolve(refuse('change', 'The two new passphrases differ.'));
      if (n === o) return Promise.resolve(refuse('change', 'The new passphrase is the same as the current one.'));
      const h = passphraseHint(n);
      if (!h.ok) return Promise.resolve(refuse('change', h.message));
      return act('change', () => api.changePassphrase(o, n));
    },
    clearError: () => state.update((s) => ({ ...s, actionError: null })),
    dispose: off,
  };
}
