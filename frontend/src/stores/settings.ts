import { writable, type Readable } from 'svelte/store';
import type { Api, Settings } from '../api';
import { resource, type ResourceState } from './resource';

export interface SettingsState extends ResourceState<Settings> {
  saving: boolean;
  saveError: string | null;
}

export interface SettingsStore extends Readable<SettingsState> {
  load(): Promise<void>;
  /** Save a change; resolves true when Go accepted it. */
  save(change: Partial<Settings>): Promise<boolean>;
}

export function createSettingsStore(api: Api): SettingsStore {
  const r = resource(() => api.settings.get());
  const extra = writable({ saving: false, saveError: null as string | null });
  let current: ResourceState<Settings> = { data: null, error: null, loading: false, loadedAt: 0 };
  let ex = { saving: false, saveError: null as string | null };
  // Another window or tablet changed them.
  api.on('settings:changed', (data) => {
    if (data && typeof data === 'object' && 'theme' in data) r.put(data as Settings);
  });

  const combined = writable<SettingsState>({ ...current, ...ex });
  r.subscribe((s) => {
    current = s;
    combined.set({ ...current, ...ex });
  });
  extra.subscribe((e) => {
    ex = e;
    combined.set({ ...current, ...ex });
  });

  return {
    subscribe: combined.subscribe,
    load: r.load,
    async save(change: Partial<Settings>): Promise<boolean> {
      if (!current.data) await r.load();
      if (!current.data) {
        extra.set({ saving: false, saveError: current.error ?? 'settings not loaded' });
        return false;
      }
      extra.set({ saving: true, saveError: null });
      try {
        const saved = await api.settings.set({ ...current.data, ...change });
        r.put(saved);
        extra.set({ saving: false, saveError: null });
        return true;
      } catch (err) {
        extra.set({ saving: false, saveError: err instanceof Error ? err.message : String(err) });
        return false;
      }
    },
  };
}
