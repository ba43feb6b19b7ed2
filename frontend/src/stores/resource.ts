import { writable, type Readable } from 'svelte/store';

export interface ResourceState<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  /** Time of the last successful load (ms since epoch), 0 if never. */
  loadedAt: number;
}

export interface Resource<T> extends Readable<ResourceState<T>> {
  /** (Re)load from Go. Concurrent calls share one request. */
  load(): Promise<void>;
  /** Replace the data (e.g. from a live event or a save's answer). */
  put(data: T): void;
}

/**
 * resource keeps one value fetched from Go with its loading and error state.
 * A failed reload keeps the last good data, so the screen does not go blank.
 */
export function resource<T>(loader: () => Promise<T>, now: () => number = Date.now): Resource<T> {
  const state = writable<ResourceState<T>>({ data: null, error: null, loading: false, loadedAt: 0 });
  let inflight: Promise<void> | null = null;

  function load(): Promise<void> {
    if (inflight) return inflight;
    state.update((s) => ({ ...s, loading: true }));
    inflight = loader()
      .then((data) => state.set({ data, error: null, loading: false, loadedAt: now() }))
      .catch((err: unknown) => {
        const msg = err instanceof Error ? err.message : String(err);
        state.update((s) => ({ ...s, error: msg, loading: false }));
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  return {
    subscribe: state.subscribe,
    load,
    put: (data: T) => state.update((s) => ({ ...s, data, error: null, loadedAt: now() })),
  };
}
