import { flushSync, mount, unmount } from 'svelte';
import { get } from 'svelte/store';
import { describe, expect, it, vi } from 'vitest';
import VaultPanel from '../components/VaultPanel.svelte';
import { settle } from '../test/fakes';
import { ApiError, createApi, type EventHandler } from '../api';
import type { Transport } from '../api/transport';
import { readable } from 'svelte/store';
import { createVaultApi, createVaultStore, passphraseHint, vaultMessage, type VaultApi, type VaultStatus } from './vault';

const GOOD = 'correct horse battery staple';
const GOOD2 = 'tulip-river-anvil-42';

/** A fake Go Vault service with Go's answers (messages copied from store/vault.go). */
function fakeVault(opts: { statusError?: string } = {}) {
  let st: VaultStatus = { exists: false, unlocked: false };
  let pass = '';
  let failures = 0;
  const handlers = new Map<string, Set<EventHandler>>();
  const emit = (name: string, data: unknown) => handlers.get(name)?.forEach((h) => h(data));
  const changed = () => {
    emit('vault:changed', { ...st });
    return { ...st };
  };
  const api = {
    status: vi.fn(async () => {
      if (opts.statusError) throw new ApiError(opts.statusError, 'Vault.Status');
      return { ...st };
    }),
    create: vi.fn(async (p: string) => {
      if (st.exists) throw new ApiError('create vault: a vault already exists');
      if (p.length < 12) throw new ApiError(`create vault: passphrase too weak: use at least 12 characters (this has ${p.length})`);
      pass = p;
      st = { exists: true, unlocked: true };
      return changed();
    }),
    unlock: vi.fn(async (p: string) => {
      if (!st.exists) throw new ApiError('unlock vault: there is no vault yet: create one');
      if (failures >= 3) throw new ApiError('unlock vault: too many wrong passphrases: try again in 4s');
      if (p !== pass) {
        failures++;
        throw new ApiError('unlock vault: wrong passphrase');
      }
      st = { ...st, unlocked: true };
      return changed();
    }),
    lock: vi.fn(async () => {
      st = { ...st, unlocked: false };
      return changed();
    }),
    changePassphrase: vi.fn(async (o: string, n: string) => {
      if (o !== pass) throw new ApiError('change passphrase: wrong passphrase');
      pass = n;
      return changed();
    }),
    on: vi.fn((name: string, h: EventHandler) => {
      let set = handlers.get(name);
      if (!set) handlers.set(name, (set = new Set()));
      set.add(h);
      return () => void set.delete(h);
    }),
  } satisfies VaultApi;
  return { api, emit };
}

describe('vault store', () => {
  it('creates, locks, unlocks and changes the passphrase', async () => {
    const f = fakeVault();
    const v = createVaultStore(f.api);
    await v.load();
    expect(get(v).status).toEqual({ exists: false, unlocked: false });

    expect(await v.create(GOOD, GOOD + 'x')).toBe(false);
    expect(get(v).actionError).toEqual({ action: 'create', message: 'The two passphrases differ.' });
    expect(f.api.create).not.toHaveBeenCalled();
    expect(await v.create('short', 'short')).toBe(false);
    expect(get(v).actionError?.message).toMatch(/Too short/);
    expect(f.api.create).not.toHaveBeenCalled();

    expect(await v.create(GOOD, GOOD)).toBe(true);
    expect(f.api.create).toHaveBeenCalledWith(GOOD);
    expect(get(v)).toMatchObject({ status: { exists: true, unlocked: true }, busy: null, actionError: null });

    expect(await v.lock()).toBe(true);
    expect(get(v).status).toEqual({ exists: true, unlocked: false });

    expect(await v.unlock('')).toBe(false);
    expect(f.api.unlock).not.toHaveBeenCalled();
    expect(await v.unlock('not it at all')).toBe(false);
    expect(get(v).actionError).toEqual({ action: 'unlock', message: 'Wrong passphrase.' });
    expect(get(v).status?.unlocked).toBe(false);
    expect(await v.unlock(GOOD)).toBe(true);
    expect(get(v).actionError).toBeNull();
    expect(get(v).status?.unlocked).toBe(true);

    expect(await v.changePassphrase(GOOD, GOOD2, GOOD2 + '!')).toBe(false);
    expect(get(v).actionError?.message).toBe('The two new passphrases differ.');
    expect(await v.changePassphrase(GOOD, GOOD, GOOD)).toBe(false);
    expect(get(v).actionError?.message).toMatch(/same as the current/);
    expect(await v.changePassphrase('wrong one, sorry', GOOD2, GOOD2)).toBe(false);
    expect(get(v).actionError).toEqual({ action: 'change', message: 'Wrong passphrase.' });
    expect(await v.changePassphrase(GOOD, GOOD2, GOOD2)).toBe(true);
    expect(f.api.changePassphrase).toHaveBeenLastCalledWith(GOOD, GOOD2);
  });

  it('says when to try again after repeated wrong passphrases', async () => {
    const f = fakeVault();
    const v = createVaultStore(f.api);
    await v.create(GOOD, GOOD);
    await v.lock();
    for (let i = 0; i < 3; i++) await v.unlock('wrong wrong wrong');
    expect(await v.unlock(GOOD)).toBe(false);
    expect(get(v).actionError?.message).toBe('Too many wrong passphrases. Try again in 4s.');
  });

  it('follows vault:changed from another tablet and stops on dispose', async () => {
    const f = fakeVault();
    const v = createVaultStore(f.api);
    await v.load();
    f.emit('vault:changed', { exists: true, unlocked: true });
    expect(get(v).status).toEqual({ exists: true, unlocked: true });
    f.emit('vault:changed', 'garbage');
    expect(get(v).status).toEqual({ exists: true, unlocked: true });
    v.dispose();
    f.emit('vault:changed', { exists: true, unlocked: false });
    expect(get(v).status?.unlocked).toBe(true);
  });

  it('reports a status failure (database in use) as an error, keeping the message', async () => {
    const msg = 'open /var/lib/onramp/onramp.db: the database is in use by another Onramp (close the other Onramp first)';
    const v = createVaultStore(fakeVault({ statusError: msg }).api);
    await v.load();
    expect(get(v)).toMatchObject({ status: null, error: msg, loading: false });
  });

  it('never keeps a passphrase in its state', async () => {
    const f = fakeVault();
    const v = createVaultStore(f.api);
    await v.create(GOOD, GOOD);
    await v.lock();
    await v.unlock('a wrong passphrase here');
    await v.changePassphrase(GOOD, GOOD2, GOOD2);
    const text = JSON.stringify(get(v));
    for (const p of [GOOD, GOOD2, 'a wrong passphrase here']) expect(text).not.toContain(p);
  });
});

describe('vault api over a transport', () => {
  it('calls Vault.<Method> with the arguments in order', async () => {
    const calls: Array<[string, string, unknown[]]> = [];
    const call = async <T,>(s: string, m: string, a: unknown[]): Promise<T> => {
      calls.push([s, m, a]);
      return { exists: true, unlocked: m !== 'Lock' } as T;
    };
    const api = createVaultApi(call, () => () => {});
    await api.status();
    await api.create(GOOD);
    await api.unlock(GOOD);
    await api.lock();
    await api.changePassphrase(GOOD, GOOD2);
    expect(calls).toEqual([
      ['Vault', 'Status', []],
      ['Vault', 'Create', [GOOD]],
      ['Vault', 'Unlock', [GOOD]],
      ['Vault', 'Lock', []],
      ['Vault', 'ChangePassphrase', [GOOD, GOOD2]],
    ]);
  });

  it('turns a Wails string rejection into the panel words', async () => {
    const t: Transport = {
      kind: 'wails',
      call: async () => {
        throw new ApiError('unlock vault: wrong passphrase', 'Vault.Unlock');
      },
      on: () => () => {},
      login: async () => {},
      connection: readable('connected'),
      auth: readable('ok'),
      start() {},
      stop() {},
    };
    const app = createApi(t);
    const v = createVaultStore(createVaultApi((s, m, a) => t.call(s, m, a), app.on));
    expect(await v.unlock(GOOD)).toBe(false);
    expect(get(v).actionError?.message).toBe('Wrong passphrase.');
  });
});

describe('passphrase rules', () => {
  it.each([
    ['', 'empty', false],
    ['short1!', 'refused', false],
    ['aaaaaaaaaaaaaaaa', 'refused', false],
    ['password1234', 'refused', false],
    ['abcdefghijklmnop', 'refused', false],
    ['zebralamp0731', 'fair', true],
    ['Zebra lamp 07 x', 'good', true],
    [GOOD, 'strong', true],
    [GOOD2, 'strong', true],
  ] as const)('%j is %s', (p, strength, ok) => {
    const h = passphraseHint(p);
    expect(h.strength).toBe(strength);
    expect(h.ok).toBe(ok);
    expect(h.message).not.toBe('');
  });

  it('words Go errors for the technician', () => {
    expect(vaultMessage('unlock vault: wrong passphrase')).toBe('Wrong passphrase.');
    expect(vaultMessage('create vault: passphrase too weak: use at least 12 characters (this has 3)')).toBe(
      'Passphrase too weak: use at least 12 characters (this has 3).',
    );
    expect(vaultMessage('something else: exact')).toBe('something else: exact');
  });
});

describe('VaultPanel', () => {
  async function flush(): Promise<void> {
    await settle(20);
    flushSync();
  }

  it('creates, locks, refuses a wrong passphrase in plain words, and unlocks', async () => {
    const target = document.createElement('div');
    document.body.appendChild(target);
    const f = fakeVault();
    const vault = createVaultStore(f.api);
    const panel = mount(VaultPanel, { target, props: { vault, secrets: true, secretsPersisted: false } });
    const $ = (sel: string) => target.querySelector(sel);
    const type = (sel: string, value: string) => {
      const el = $(sel) as HTMLInputElement;
      el.value = value;
      el.dispatchEvent(new Event('input', { bubbles: true }));
    };
    const submit = async (sel: string) => {
      ($(sel) as HTMLFormElement).requestSubmit();
      await flush();
    };
    try {
      await flush();
      expect($('[data-testid=vault-memory-only]')?.textContent).toContain('lost if Onramp restarts');
      expect($('[data-testid=vault-create]')).not.toBeNull();
      type('[data-testid=vault-pass]', 'short');
      flushSync();
      expect($('[data-testid=vault-hint]')?.textContent).toContain('Too short');
      expect(($('[data-testid=vault-create-btn]') as HTMLButtonElement).disabled).toBe(true);
      type('[data-testid=vault-pass]', GOOD);
      type('[data-testid=vault-confirm]', GOOD + '!');
      flushSync();
      expect($('[data-testid=vault-mismatch]')).not.toBeNull();
      type('[data-testid=vault-confirm]', GOOD);
      flushSync();
      expect(($('[data-testid=vault-create-btn]') as HTMLButtonElement).disabled).toBe(false);
      await submit('[data-testid=vault-create]');
      expect(f.api.create).toHaveBeenCalledWith(GOOD);
      expect($('[data-testid=vault-badge]')?.textContent).toContain('Unlocked');

      ($('[data-testid=vault-lock-btn]') as HTMLButtonElement).click();
      await flush();
      expect($('[data-testid=vault-badge]')?.textContent).toContain('Locked');
      type('[data-testid=vault-pass]', 'not the passphrase');
      await submit('[data-testid=vault-unlock]');
      expect($('[data-testid=vault-error]')?.textContent?.trim()).toBe('Wrong passphrase.');
      expect(($('[data-testid=vault-pass]') as HTMLInputElement).value).toBe('');
      type('[data-testid=vault-pass]', GOOD);
      await submit('[data-testid=vault-unlock]');
      expect($('[data-testid=vault-error]')).toBeNull();
      expect($('[data-testid=vault-badge]')?.textContent).toContain('Unlocked');
      // No passphrase left in the page.
      expect(target.innerHTML).not.toContain(GOOD);
    } finally {
      unmount(panel);
      target.remove();
    }
  });
});
