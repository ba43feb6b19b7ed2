import { get } from 'svelte/store';
import { describe, expect, it, vi } from 'vitest';
import { ApiError } from './errors';
import { createApi, detectTransport } from './index';
import { createWailsTransport, type WailsWindow } from './wails';

function fakeWails() {
  const listeners = new Map<string, Array<(...d: unknown[]) => void>>();
  const offCalls: string[] = [];
  const w: WailsWindow = {
    go: {
      app: {
        System: {
          Info: vi.fn(async () => ({ version: 'v1.2.3', dataDir: '/var/lib/onramp' })),
        },
        Settings: {
          Set: vi.fn(async (s: unknown) => {
            if ((s as { theme: string }).theme === 'pink') throw 'settings: unknown theme "pink"';
            return s;
          }),
        },
        Shell: {
          Quit: vi.fn(() => Promise.reject('wrong PIN')),
          Session: vi.fn(async () => ({ mode: 'kiosk', authRequired: false, authenticated: true })),
        },
        Network: {
          Interfaces: vi.fn(() => Promise.reject(new Error('already an Error'))),
        },
      },
    },
    runtime: {
      EventsOn: vi.fn((name: string, cb: (...d: unknown[]) => void) => {
        const l = listeners.get(name) ?? [];
        l.push(cb);
        listeners.set(name, l);
        return () => {
          offCalls.push(name);
          listeners.set(
            name,
            (listeners.get(name) ?? []).filter((x) => x !== cb),
          );
        };
      }),
      EventsOff: vi.fn(),
    },
  };
  const emit = (name: string, ...data: unknown[]) => {
    for (const l of listeners.get(name) ?? []) l(...data);
  };
  return { w, emit, offCalls, listeners };
}

describe('wails transport', () => {
  it('calls window.go.app.<Service>.<Method> with the args', async () => {
    const { w } = fakeWails();
    const api = createApi(createWailsTransport(w));
    expect(api.transport).toBe('wails');
    await expect(api.system.info()).resolves.toEqual({ version: 'v1.2.3', dataDir: '/var/lib/onramp' });
    const s = { theme: 'dark' as const, iface: 'eth1', netbootMode: 'auto' as const };
    await expect(api.settings.set(s)).resolves.toEqual(s);
    expect(w.go?.['app']?.['Settings']?.['Set']).toHaveBeenCalledWith(s);
  });

  it('turns a string rejection into an Error', async () => {
    const { w } = fakeWails();
    const api = createApi(createWailsTransport(w));
    const err = await api.shell.quit('0000').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toBe('wrong PIN');
    expect((err as ApiError).call).toBe('Shell.Quit');
    expect(w.go?.['app']?.['Shell']?.['Quit']).toHaveBeenCalledWith('0000');

    const bad = await api.settings
      .set({ theme: 'pink' as 'dark', iface: '', netbootMode: 'auto' })
      .catch((e: unknown) => e);
    expect((bad as Error).message).toBe('settings: unknown theme "pink"');
  });

  it('keeps an Error rejection as it is', async () => {
    const { w } = fakeWails();
    const api = createApi(createWailsTransport(w));
    await expect(api.network.interfaces()).rejects.toThrow('already an Error');
  });

  it('says clearly when a method is not bound', async () => {
    const { w } = fakeWails();
    const t = createWailsTransport(w);
    const err = await t.call('Netboot', 'Start', []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as Error).message).toBe('Netboot.Start is not bound in this build');
  });

  it('is always connected and never needs a PIN', async () => {
    const { w } = fakeWails();
    const t = createWailsTransport(w);
    expect(get(t.connection)).toBe('connected');
    expect(get(t.auth)).toBe('ok');
    await expect(t.login('x')).resolves.toBeUndefined();
  });

  it('subscribes once per event name and unsubscribes with the last handler', () => {
    const { w, emit, offCalls } = fakeWails();
    const t = createWailsTransport(w);
    const a: unknown[] = [];
    const b: unknown[] = [];
    const offA = t.on('netboot:machine', (d) => a.push(d));
    const offB = t.on('netboot:machine', (d) => b.push(d));
    expect(w.runtime?.EventsOn).toHaveBeenCalledTimes(1);
    emit('netboot:machine', { mac: 'aa' });
    offA();
    expect(offCalls).toEqual([]);
    emit('netboot:machine', { mac: 'bb' });
    offB();
    expect(offCalls).toEqual(['netboot:machine']);
    emit('netboot:machine', { mac: 'cc' });
    expect(a).toEqual([{ mac: 'aa' }]);
    expect(b).toEqual([{ mac: 'aa' }, { mac: 'bb' }]);
  });

  it('falls back to EventsOff when EventsOn returns nothing', () => {
    const { w } = fakeWails();
    const rt = w.runtime!;
    rt.EventsOn = vi.fn(() => undefined);
    const t = createWailsTransport(w);
    const off = t.on('system:info', () => {});
    off();
    expect(rt.EventsOff).toHaveBeenCalledWith('system:info');
  });
});

describe('detectTransport', () => {
  it('picks Wails when window.go is present, else the web transport', () => {
    const { w } = fakeWails();
    expect(detectTransport(w as WailsWindow & Window).kind).toBe('wails');
    expect(detectTransport({} as WailsWindow & Window).kind).toBe('web');
    expect(detectTransport(undefined).kind).toBe('web');
  });
});
