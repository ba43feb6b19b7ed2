import { readable } from 'svelte/store';
import { ApiError, toError } from './errors';
import { HandlerMap, type Transport } from './transport';
import type { EventHandler, Unsubscribe } from './types';

// Wails v2 injects window.go.<package>.<Struct>.<Method> and window.runtime.
// We call them dynamically so a fresh clone (no generated wailsjs/) builds.
type BoundMethod = (...args: unknown[]) => Promise<unknown>;
export interface WailsGo {
  [pkg: string]: { [service: string]: { [method: string]: BoundMethod | undefined } | undefined } | undefined;
}
export interface WailsRuntime {
  EventsOn(name: string, cb: (...data: unknown[]) => void): (() => void) | void;
  EventsOff(name: string, ...more: string[]): void;
}
export interface WailsWindow {
  go?: WailsGo;
  runtime?: WailsRuntime;
}

/** Go package whose structs are bound (`app`). */
export const WAILS_PACKAGE = 'app';

export function hasWails(w: WailsWindow | undefined): boolean {
  return !!w && typeof w.go === 'object' && w.go !== null;
}

export function createWailsTransport(w: WailsWindow): Transport {
  const handlers = new HandlerMap();
  const offs = new Map<string, () => void>();

  function method(service: string, name: string): BoundMethod {
    const fn = w.go?.[WAILS_PACKAGE]?.[service]?.[name];
    if (typeof fn !== 'function') {
      throw new ApiError(`${service}.${name} is not bound in this build`, `${service}.${name}`);
    }
    return fn;
  }

  function attach(name: string): void {
    const rt = w.runtime;
    if (!rt) return;
    // Wails passes event payloads as extra arguments; ours are one value.
    const off = rt.EventsOn(name, (...data: unknown[]) => handlers.emit(name, data[0]));
    offs.set(name, typeof off === 'function' ? off : () => rt.EventsOff(name));
  }

  return {
    kind: 'wails',
    // In-process: always connected, never a PIN.
    connection: readable('connected'),
    auth: readable('ok'),
    async call<T>(service: string, name: string, args: unknown[]): Promise<T> {
      const call = `${service}.${name}`;
      try {
        return (await method(service, name)(...args)) as T;
      } catch (reason) {
        throw toError(reason, call);
      }
    },
    on(name: string, handler: EventHandler): Unsubscribe {
      const { first, remove } = handlers.add(name, handler);
      if (first) attach(name);
      return () => {
        if (remove()) {
          offs.get(name)?.();
          offs.delete(name);
        }
      };
    },
    async login(): Promise<void> {},
    start() {},
    stop() {
      for (const off of offs.values()) off();
      offs.clear();
    },
  };
}
