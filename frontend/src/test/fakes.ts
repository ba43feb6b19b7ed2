import type { EventSourceLike } from '../api/web';

/** A controllable EventSource: tests open it, send events, or break it. */
export class FakeEventSource implements EventSourceLike {
  static all: FakeEventSource[] = [];
  static reset(): void {
    FakeEventSource.all = [];
  }
  static last(): FakeEventSource {
    const es = FakeEventSource.all.at(-1);
    if (!es) throw new Error('no EventSource was created');
    return es;
  }

  onopen: ((ev: Event) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  closed = false;
  listeners = new Map<string, Array<(ev: MessageEvent) => void>>();

  constructor(
    readonly url: string,
    readonly init?: EventSourceInit,
  ) {
    FakeEventSource.all.push(this);
  }

  addEventListener(type: string, listener: (ev: MessageEvent) => void): void {
    const l = this.listeners.get(type) ?? [];
    l.push(listener);
    this.listeners.set(type, l);
  }

  close(): void {
    this.closed = true;
  }

  open(): void {
    this.onopen?.(new Event('open'));
  }

  /** Deliver `event: <type>` with `data: <data>` (a string, as on the wire). */
  send(type: string, data: string): void {
    for (const l of this.listeners.get(type) ?? []) l(new MessageEvent(type, { data }));
  }

  fail(): void {
    this.onerror?.(new Event('error'));
  }
}

export interface Recorded {
  url: string;
  init: RequestInit | undefined;
  body: unknown;
}

/**
 * fakeFetch answers each request with the next response from `answers`
 * (status, body) and records what was asked.
 */
export function fakeFetch(answers: Array<[number, unknown] | Error>): { fetch: typeof fetch; calls: Recorded[] } {
  const calls: Recorded[] = [];
  const queue = [...answers];
  const f = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    calls.push({ url, init, body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined });
    const next = queue.shift();
    if (!next) throw new Error(`unexpected request ${url}`);
    if (next instanceof Error) throw next;
    const [status, body] = next;
    const text = typeof body === 'string' ? body : body === undefined ? '' : JSON.stringify(body);
    return new Response(status === 204 ? null : text, { status });
  };
  return { fetch: f as typeof fetch, calls };
}

/** Resolve pending promise callbacks. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}
