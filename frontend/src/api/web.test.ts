import { get } from 'svelte/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeEventSource, fakeFetch, settle } from '../test/fakes';
import { ApiError, AuthRequiredError } from './errors';
import { backoffDelay, createWebTransport, DEFAULT_BACKOFF, type EventSourceCtor } from './web';

const ES = FakeEventSource as unknown as EventSourceCtor;

describe('web transport calls', () => {
  it('POSTs the args as a JSON array and returns the JSON result', async () => {
    const { fetch, calls } = fakeFetch([[200, { theme: 'dark', iface: 'eth1', netbootMode: 'auto' }]]);
    const t = createWebTransport({ fetch, EventSource: ES });
    const got = await t.call('Settings', 'Set', [{ theme: 'dark', iface: 'eth1', netbootMode: 'auto' }]);
    expect(got).toEqual({ theme: 'dark', iface: 'eth1', netbootMode: 'auto' });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.url).toBe('/api/call/Settings.Set');
    expect(calls[0]?.init?.method).toBe('POST');
    expect((calls[0]?.init?.headers as Record<string, string>)['Content-Type']).toBe('application/json');
    expect(calls[0]?.body).toEqual([{ theme: 'dark', iface: 'eth1', netbootMode: 'auto' }]);
  });

  it('uses the base URL', async () => {
    const { fetch, calls } = fakeFetch([[200, []]]);
    const t = createWebTransport({ fetch, EventSource: ES, base: 'http://10.77.0.1:8080/' });
    await t.call('Network', 'Interfaces', []);
    expect(calls[0]?.url).toBe('http://10.77.0.1:8080/api/call/Network.Interfaces');
  });

  it('returns null for an empty body', async () => {
    const { fetch } = fakeFetch([[200, '']]);
    const t = createWebTransport({ fetch, EventSource: ES });
    await expect(t.call('Shell', 'Quit', ['1234'])).resolves.toBeNull();
  });

  const errorCases: Array<{ name: string; answer: [number, unknown] | Error; message: string; status?: number }> = [
    { name: 'JSON error body', answer: [400, { error: 'settings: unknown theme "pink"' }], message: 'settings: unknown theme "pink"', status: 400 },
    { name: 'plain text body', answer: [500, 'panic: nil map\n'], message: 'panic: nil map', status: 500 },
    { name: 'empty body', answer: [502, ''], message: 'HTTP 502', status: 502 },
    { name: 'JSON without error field', answer: [404, { nope: 1 }], message: '{"nope":1}', status: 404 },
    { name: 'network failure', answer: new TypeError('Failed to fetch'), message: 'cannot reach Onramp: Failed to fetch' },
  ];
  for (const tc of errorCases) {
    it(`maps ${tc.name} to an ApiError`, async () => {
      const { fetch } = fakeFetch([tc.answer]);
      const t = createWebTransport({ fetch, EventSource: ES });
      const err = await t.call('Settings', 'Set', [{}]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApiError);
      expect(err).toBeInstanceOf(Error);
      expect((err as ApiError).message).toBe(tc.message);
      expect((err as ApiError).call).toBe('Settings.Set');
      expect((err as ApiError).status).toBe(tc.status);
    });
  }

  it('rejects bad JSON in a 200 answer', async () => {
    const { fetch } = fakeFetch([[200, '{not json']]);
    const t = createWebTransport({ fetch, EventSource: ES });
    await expect(t.call('System', 'Info', [])).rejects.toThrow('bad JSON from System.Info');
  });
});

describe('web transport PIN flow', () => {
  it('401 signals that a PIN is needed, waits for login, then retries', async () => {
    const info = { version: 'v1' };
    const { fetch, calls } = fakeFetch([
      [401, { error: 'access PIN required' }],
      [401, { error: 'wrong PIN' }], // first login attempt
      [200, { ok: true }], // second login attempt
      [200, info], // the retried call
    ]);
    const t = createWebTransport({ fetch, EventSource: ES });
    expect(get(t.auth)).toBe('unknown');

    let result: unknown;
    const pending = t.call('System', 'Info', []).then((r) => (result = r));
    await settle(10);
    expect(get(t.auth)).toBe('required');
    expect(result).toBeUndefined();

    await expect(t.login('0000')).rejects.toThrow('wrong PIN');
    expect(get(t.auth)).toBe('required');
    await t.login('1234');
    expect(get(t.auth)).toBe('ok');
    await pending;
    expect(result).toEqual(info);
    expect(calls.map((c) => c.url)).toEqual(['/api/call/System.Info', '/api/login', '/api/login', '/api/call/System.Info']);
    expect(calls[2]?.body).toEqual({ pin: '1234' });
  });

  it('gives up with AuthRequiredError when retries are used up', async () => {
    const { fetch } = fakeFetch([[401, {}]]);
    const t = createWebTransport({ fetch, EventSource: ES, authRetries: 0 });
    const err = await t.call('System', 'Info', []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthRequiredError);
    expect((err as AuthRequiredError).status).toBe(401);
  });

  it('requireAuth marks the PIN as needed unless already logged in', async () => {
    const { fetch } = fakeFetch([[200, { ok: true }]]);
    const t = createWebTransport({ fetch, EventSource: ES });
    t.requireAuth();
    expect(get(t.auth)).toBe('required');
    await t.login('1');
    t.requireAuth();
    expect(get(t.auth)).toBe('ok');
  });
});

describe('web transport events', () => {
  beforeEach(() => {
    FakeEventSource.reset();
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('connects to /api/events and is connected on hello', () => {
    const t = createWebTransport({ EventSource: ES, fetch: fakeFetch([]).fetch });
    expect(get(t.connection)).toBe('connecting');
    t.start();
    t.start(); // idempotent
    expect(FakeEventSource.all).toHaveLength(1);
    const es = FakeEventSource.last();
    expect(es.url).toBe('/api/events');
    expect(es.init?.withCredentials).toBe(true);
    es.send('hello', '{"version":"v1"}');
    expect(get(t.connection)).toBe('connected');
    t.stop();
    expect(es.closed).toBe(true);
    expect(get(t.connection)).toBe('offline');
  });

  it('dispatches namespaced events to subscribers, parsed from JSON', () => {
    const t = createWebTransport({ EventSource: ES, fetch: fakeFetch([]).fetch });
    const early: unknown[] = [];
    const late: unknown[] = [];
    const other: unknown[] = [];
    t.on('netboot:machine', (d) => early.push(d)); // before start
    t.start();
    const es = FakeEventSource.last();
    const off = t.on('netboot:machine', (d) => late.push(d)); // after start
    t.on('install:progress', (d) => other.push(d));
    es.send('netboot:machine', '{"mac":"52:54:00:00:00:01","stage":"dhcp"}');
    es.send('install:progress', 'not json');
    off();
    es.send('netboot:machine', '{"mac":"52:54:00:00:00:02"}');
    expect(early).toEqual([{ mac: '52:54:00:00:00:01', stage: 'dhcp' }, { mac: '52:54:00:00:00:02' }]);
    expect(late).toEqual([{ mac: '52:54:00:00:00:01', stage: 'dhcp' }]);
    expect(other).toEqual(['not json']);
    expect(get(t.connection)).toBe('connected');
  });

  it('a throwing handler does not stop the others', () => {
    const t = createWebTransport({ EventSource: ES, fetch: fakeFetch([]).fetch });
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    const got: unknown[] = [];
    t.on('x:y', () => {
      throw new Error('boom');
    });
    t.on('x:y', (d) => got.push(d));
    t.start();
    FakeEventSource.last().send('x:y', '1');
    expect(got).toEqual([1]);
    expect(err).toHaveBeenCalled();
  });

  it('reconnects with bounded backoff and re-attaches subscribers', () => {
    const backoff = { initialMs: 100, maxMs: 400, factor: 2, offlineAfter: 3 };
    const t = createWebTransport({ EventSource: ES, fetch: fakeFetch([]).fetch, backoff });
    const got: unknown[] = [];
    t.on('netboot:event', (d) => got.push(d));
    t.start();
    FakeEventSource.last().open();
    expect(get(t.connection)).toBe('connected');

    const states: string[] = [];
    const delays = [100, 200, 400, 400, 400];
    for (const [i, delay] of delays.entries()) {
      FakeEventSource.last().fail();
      states.push(get(t.connection));
      expect(FakeEventSource.all).toHaveLength(i + 1);
      vi.advanceTimersByTime(delay - 1);
      expect(FakeEventSource.all).toHaveLength(i + 1);
      vi.advanceTimersByTime(1);
      expect(FakeEventSource.all).toHaveLength(i + 2);
      expect(FakeEventSource.all[i]?.closed).toBe(true);
    }
    expect(states).toEqual(['reconnecting', 'reconnecting', 'reconnecting', 'offline', 'offline']);

    const es = FakeEventSource.last();
    es.send('hello', '{}');
    expect(get(t.connection)).toBe('connected');
    es.send('netboot:event', '{"n":1}');
    expect(got).toEqual([{ n: 1 }]);
    // after a success, the backoff starts again from the first delay
    es.fail();
    vi.advanceTimersByTime(100);
    expect(FakeEventSource.all).toHaveLength(delays.length + 2);
  });

  it('treats a silent stream as dead (watchdog) and reconnects', () => {
    const t = createWebTransport({
      EventSource: ES,
      fetch: fakeFetch([]).fetch,
      watchdogMs: 1000,
      backoff: { initialMs: 10 },
    });
    t.start();
    const es = FakeEventSource.last();
    es.send('hello', '{}');
    vi.advanceTimersByTime(900);
    es.send('ping', '{}'); // keeps it alive
    vi.advanceTimersByTime(900);
    expect(get(t.connection)).toBe('connected');
    vi.advanceTimersByTime(100);
    expect(es.closed).toBe(true);
    expect(get(t.connection)).toBe('reconnecting');
    vi.advanceTimersByTime(10);
    expect(FakeEventSource.all).toHaveLength(2);
  });

  it('waits for the PIN instead of retrying, then reconnects at once after login', async () => {
    const { fetch } = fakeFetch([[200, { ok: true }]]);
    const t = createWebTransport({ EventSource: ES, fetch, backoff: { initialMs: 10 } });
    t.requireAuth();
    t.start();
    FakeEventSource.last().fail(); // the server answered 401
    vi.advanceTimersByTime(60_000);
    expect(FakeEventSource.all).toHaveLength(1);
    await t.login('1234');
    expect(FakeEventSource.all).toHaveLength(2);
    FakeEventSource.last().send('hello', '{}');
    expect(get(t.connection)).toBe('connected');
  });

  it('reconnects at once when the browser comes back online', () => {
    const win = new EventTarget() as unknown as Window;
    const t = createWebTransport({ EventSource: ES, fetch: fakeFetch([]).fetch, win, backoff: { initialMs: 5000 } });
    t.start();
    FakeEventSource.last().fail();
    expect(FakeEventSource.all).toHaveLength(1);
    win.dispatchEvent(new Event('online'));
    expect(FakeEventSource.all).toHaveLength(2);
    t.stop();
    win.dispatchEvent(new Event('online'));
    expect(FakeEventSource.all).toHaveLength(2);
  });

  it('is offline without EventSource support', () => {
    const t = createWebTransport({ EventSource: undefined, fetch: fakeFetch([]).fetch });
    t.start();
    expect(get(t.connection)).toBe('offline');
  });
});

describe('backoffDelay', () => {
  it('grows by the factor and stops at the cap', () => {
    const got = [0, 1, 2, 3, 4, 5, 6, 10, 50].map((n) => backoffDelay(DEFAULT_BACKOFF, n));
    expect(got).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000]);
  });
});
