import type { Readable } from 'svelte/store';
import type { AuthState, ConnectionState, EventHandler, Unsubscribe } from './types';

/** How the UI reaches the Go services: Wails bindings or HTTP. */
export interface Transport {
  readonly kind: 'wails' | 'web';
  call<T>(service: string, method: string, args: unknown[]): Promise<T>;
  on(event: string, handler: EventHandler): Unsubscribe;
  login(pin: string): Promise<void>;
  readonly connection: Readable<ConnectionState>;
  readonly auth: Readable<AuthState>;
  /** Start the live event stream. Idempotent. */
  start(): void;
  /** Stop the live event stream and timers. */
  stop(): void;
}

/**
 * Handlers by event name. Each handler is isolated: one that throws does not
 * stop the others.
 */
export class HandlerMap {
  private byName = new Map<string, Set<EventHandler>>();

  add(name: string, h: EventHandler): { first: boolean; remove: () => boolean } {
    let set = this.byName.get(name);
    const first = !set;
    if (!set) {
      set = new Set();
      this.byName.set(name, set);
    }
    set.add(h);
    return {
      first,
      // Returns true when that was the last handler for the name.
      remove: () => {
        const s = this.byName.get(name);
        if (!s || !s.delete(h)) return false;
        if (s.size === 0) {
          this.byName.delete(name);
          return true;
        }
        return false;
      },
    };
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  emit(name: string, data: unknown): void {
    const set = this.byName.get(name);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(data);
      } catch (err) {
        console.error(`onramp: handler for ${name} failed`, err);
      }
    }
  }
}
