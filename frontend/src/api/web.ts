import { ApiError, AuthRequiredError } from './errors';
import { cell } from './observable';
import { HandlerMap, type Transport } from './transport';
import type { AuthState, ConnectionState, EventHandler, Unsubscribe } from './types';

// Web transport for `onramp serve`:
//   POST /api/call/<Service>.<Method>  body: JSON array of args
//     200 → JSON result; 401 → access PIN needed; else {"error": "..."}
//   POST /api/login {"pin": "..."}     200 ok (sets an HttpOnly cookie), 401 wrong PIN
//   GET  /api/events                   Server-Sent Events, `event: <name>` +
//                                      `data: <json>`; `hello` on connect, `ping` every 15 s

/** The part of EventSource we use (a fake one in tests). */
export interface EventSourceLike {
  onopen: ((ev: Event) => void) | null;
  onerror: ((ev: Event) => void) | null;
  addEventListener(type: string, listener: (ev: MessageEvent) => void): void;
  close(): void;
}
export type EventSourceCtor = new (url: string, init?: EventSourceInit) => EventSourceLike;

export interface Backoff {
  /** First retry delay. */
  initialMs: number;
  /** Cap for the delay between retries (retries go on at this pace). */
  maxMs: number;
  factor: number;
  /** Failed attempts in a row after which the indicator says offline. */
  offlineAfter: number;
}

export interface WebOptions {
  /** Origin + path prefix of the server; '' means this page's origin. */
  base?: string;
  fetch?: typeof fetch;
  /** Constructor for the event stream; an explicit undefined means none. */
  EventSource?: EventSourceCtor | undefined;
  backoff?: Partial<Backoff>;
  /** No message (ping every 15 s) for this long means the stream is dead. */
  watchdogMs?: number;
  /** Times a call waits for a PIN and retries after a 401 before giving up. */
  authRetries?: number;
  /** Window whose `online` event triggers an immediate reconnect. */
  win?: Pick<Window, 'addEventListener' | 'removeEventListener'>;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 10_000, factor: 2, offlineAfter: 4 };

/** Delay before reconnect attempt n (0-based), growing and capped. */
export function backoffDelay(b: Backoff, attempt: number): number {
  return Math.min(b.maxMs, Math.round(b.initialMs * Math.pow(b.factor, Math.max(0, attempt))));
}

export interface WebTransport extends Transport {
  /** The UI learned (e.g. from Shell.Session) that a PIN is needed. */
  requireAuth(): void;
}

export function createWebTransport(opts: WebOptions = {}): WebTransport {
  const base = (opts.base ?? '').replace(/\/+$/, '');
  const doFetch = opts.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a));
  // An explicit `EventSource: undefined` means "none" (tests); absent means the browser's.
  const ES = 'EventSource' in opts ? opts.EventSource : (globalThis.EventSource as unknown as EventSourceCtor | undefined);
  const backoff: Backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
  const watchdogMs = opts.watchdogMs ?? 45_000;
  const authRetries = opts.authRetries ?? 3;

  const connection = cell<ConnectionState>('connecting');
  const auth = cell<AuthState>('unknown');
  const handlers = new HandlerMap();

  let authWaiters: Array<() => void> = [];
  let es: EventSourceLike | null = null;
  let started = false;
  let failures = 0;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let watchdog: ReturnType<typeof setTimeout> | null = null;
  const attached = new Set<string>();

  function setAuth(s: AuthState): void {
    auth.set(s);
    if (s === 'ok') {
      const w = authWaiters;
      authWaiters = [];
      for (const resolve of w) resolve();
    }
  }

  function waitForAuth(): Promise<void> {
    return new Promise((resolve) => authWaiters.push(resolve));
  }

  async function errorMessage(res: Response): Promise<string> {
    const text = await res.text().catch(() => '');
    if (text) {
      try {
        const body = JSON.parse(text) as unknown;
        if (body && typeof body === 'object' && 'error' in body) {
          const e = (body as { error: unknown }).error;
          if (typeof e === 'string' && e) return e;
        }
      } catch {
        // not JSON: fall through to the raw text
      }
      return text.trim().slice(0, 300);
    }
    return `HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`;
  }

  async function post(path: string, body: unknown, call: string): Promise<Response> {
    try {
      return await doFetch(base + path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
        credentials: 'same-origin',
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ApiError(`cannot reach Onramp: ${why}`, call);
    }
  }

  // ---- live events -------------------------------------------------------

  function clearTimers(): void {
    if (retryTimer !== null) clearTimeout(retryTimer);
    if (watchdog !== null) clearTimeout(watchdog);
    retryTimer = null;
    watchdog = null;
  }

  function armWatchdog(): void {
    if (watchdog !== null) clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      watchdog = null;
      fail();
    }, watchdogMs);
  }

  function alive(): void {
    failures = 0;
    connection.set('connected');
    armWatchdog();
  }

  function dispatch(name: string, ev: MessageEvent): void {
    alive();
    let data: unknown = ev.data;
    if (typeof ev.data === 'string' && ev.data !== '') {
      try {
        data = JSON.parse(ev.data);
      } catch {
        data = ev.data;
      }
    }
    handlers.emit(name, data);
  }

  function attach(name: string): void {
    if (!es || attached.has(name)) return;
    attached.add(name);
    es.addEventListener(name, (ev) => dispatch(name, ev));
  }

  function closeStream(): void {
    if (es) {
      es.onopen = null;
      es.onerror = null;
      es.close();
    }
    es = null;
    attached.clear();
  }

  function open(): void {
    closeStream();
    if (!ES) {
      connection.set('offline');
      return;
    }
    const stream = new ES(base + '/api/events', { withCredentials: true });
    es = stream;
    stream.onopen = () => alive();
    stream.onerror = () => {
      if (es === stream) fail();
    };
    for (const name of ['hello', 'ping', ...handlers.names()]) attach(name);
    armWatchdog();
  }

  function fail(): void {
    closeStream();
    clearTimers();
    if (!started) return;
    failures++;
    connection.set(failures > backoff.offlineAfter ? 'offline' : 'reconnecting');
    if (auth.get() === 'required') return; // login() reconnects
    retryTimer = setTimeout(() => {
      retryTimer = null;
      open();
    }, backoffDelay(backoff, failures - 1));
  }

  function reconnectNow(): void {
    if (!started || connection.get() === 'connected') return;
    clearTimers();
    open();
  }

  const onOnline = (): void => reconnectNow();

  return {
    kind: 'web',
    connection,
    auth,

    async call<T>(service: string, method: string, args: unknown[]): Promise<T> {
      const call = `${service}.${method}`;
      for (let attempt = 0; ; attempt++) {
        const res = await post(`/api/call/${encodeURIComponent(service)}.${encodeURIComponent(method)}`, args, call);
        if (res.status === 401) {
          setAuth('required');
          if (attempt >= authRetries) throw new AuthRequiredError(call);
          await waitForAuth();
          continue;
        }
        if (!res.ok) throw new ApiError(await errorMessage(res), call, res.status);
        const text = await res.text();
        if (text.trim() === '') return null as T;
        try {
          return JSON.parse(text) as T;
        } catch {
          throw new ApiError(`bad JSON from ${call}`, call, res.status);
        }
      }
    },

    on(name: string, handler: EventHandler): Unsubscribe {
      const { remove } = handlers.add(name, handler);
      attach(name);
      // An EventSource cannot drop a listener by name without the function;
      // dispatch simply finds no handlers once the last one is removed.
      return () => void remove();
    },

    async login(pin: string): Promise<void> {
      const res = await post('/api/login', { pin }, 'login');
      if (res.status === 401) {
        setAuth('required');
        throw new ApiError('wrong PIN', 'login', 401);
      }
      if (!res.ok) throw new ApiError(await errorMessage(res), 'login', res.status);
      setAuth('ok');
      failures = 0;
      reconnectNow();
    },

    requireAuth(): void {
      if (auth.get() !== 'ok') setAuth('required');
    },

    start(): void {
      if (started) return;
      started = true;
      opts.win?.addEventListener('online', onOnline);
      open();
    },

    stop(): void {
      started = false;
      opts.win?.removeEventListener('online', onOnline);
      clearTimers();
      closeStream();
      connection.set('offline');
    },
  };
}
