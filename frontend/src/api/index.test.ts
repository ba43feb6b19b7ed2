import { readable } from 'svelte/store';
import { describe, expect, it, vi } from 'vitest';
import { toError, ApiError } from './errors';
import { createApi } from './index';
import type { Transport } from './transport';

function fakeTransport(answers: Record<string, unknown>) {
  const calls: Array<[string, string, unknown[]]> = [];
  const requireAuth = vi.fn();
  const t: Transport & { requireAuth: () => void } = {
    kind: 'web',
    call: async <T>(service: string, method: string, args: unknown[]): Promise<T> => {
      calls.push([service, method, args]);
      return answers[`${service}.${method}`] as T;
    },
    on: () => () => {},
    login: async () => {},
    connection: readable('connected'),
    auth: readable('unknown'),
    start: () => {},
    stop: () => {},
    requireAuth,
  };
  return { t, calls, requireAuth };
}

describe('createApi', () => {
  it('maps each function to its Go service and method', async () => {
    const { t, calls } = fakeTransport({ 'Network.Interfaces': null, 'Shell.Session': { mode: 'web', authRequired: false, authenticated: false } });
    const api = createApi(t);
    await api.system.info();
    await expect(api.network.interfaces()).resolves.toEqual([]); // Go nil slice
    await api.settings.get();
    await api.settings.set({ theme: 'light', iface: 'eth0', netbootMode: 'proxy' });
    await api.shell.session();
    await api.shell.quit('4321');
    expect(calls).toEqual([
      ['System', 'Info', []],
      ['Network', 'Interfaces', []],
      ['Settings', 'Get', []],
      ['Settings', 'Set', [{ theme: 'light', iface: 'eth0', netbootMode: 'proxy' }]],
      ['Shell', 'Session', []],
      ['Shell', 'Quit', ['4321']],
    ]);
  });

  const sessions = [
    { authRequired: true, authenticated: false, asks: true },
    { authRequired: true, authenticated: true, asks: false },
    { authRequired: false, authenticated: false, asks: false },
  ];
  for (const s of sessions) {
    it(`session authRequired=${s.authRequired} authenticated=${s.authenticated} → PIN asked: ${s.asks}`, async () => {
      const { t, requireAuth } = fakeTransport({ 'Shell.Session': { mode: 'web', ...s } });
      await createApi(t).shell.session();
      expect(requireAuth).toHaveBeenCalledTimes(s.asks ? 1 : 0);
    });
  }
});

describe('toError', () => {
  const cases: Array<{ in: unknown; msg: string }> = [
    { in: 'wrong PIN', msg: 'wrong PIN' },
    { in: '', msg: 'unknown error' },
    { in: { error: 'from object' }, msg: 'from object' },
    { in: { code: 7 }, msg: '{"code":7}' },
    { in: 42, msg: '42' },
    { in: undefined, msg: 'undefined' },
  ];
  for (const tc of cases) {
    it(`${JSON.stringify(tc.in) ?? 'undefined'} → "${tc.msg}"`, () => {
      const e = toError(tc.in, 'X.Y');
      expect(e).toBeInstanceOf(ApiError);
      expect(e.message).toBe(tc.msg);
      expect((e as ApiError).call).toBe('X.Y');
    });
  }
  it('keeps an Error', () => {
    const orig = new RangeError('r');
    expect(toError(orig)).toBe(orig);
  });
});
