import { writable, type Readable, type Writable } from 'svelte/store';

/** A store whose value can also be read synchronously (for the transports). */
export interface Cell<T> extends Readable<T> {
  get(): T;
  set(v: T): void;
}

export function cell<T>(initial: T): Cell<T> {
  let value = initial;
  const w: Writable<T> = writable(initial);
  return {
    subscribe: w.subscribe,
    get: () => value,
    set(v: T) {
      if (v === value) return;
      value = v;
      w.set(v);
    },
  };
}
