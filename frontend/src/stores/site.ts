import { writable, type Readable } from 'svelte/store';
import { siteView, type Api, type Site, type SiteView } from '../api';
import { resource, type Resource } from './resource';

export type SiteAction = 'save' | 'import' | 'export' | 'secrets';

export interface SiteStore extends Resource<SiteView> {
  /** The action on its way, if any. */
  busy: Readable<SiteAction | null>;
  /** The last action's failure in plain words (a rejected call, not problems). */
  actionError: Readable<{ action: SiteAction; message: string } | null>;
  /** Save (allowed with problems); resolves true when Go stored it. */
  save(s: Site): Promise<boolean>;
  importYaml(yaml: string): Promise<boolean>;
  /** The saved site as YAML, or null (see actionError). */
  exportYaml(): Promise<string | null>;
  generateSecrets(): Promise<boolean>;
  dispose(): void;
}

/** Site.*, kept live by `site:changed` (another tablet saved) and `site:secrets`. */
export function createSiteStore(api: Api): SiteStore {
  const r = resource(() => api.site.get());
  const busy = writable<SiteAction | null>(null);
  const actionError = writable<{ action: SiteAction; message: string } | null>(null);
  const offs = [
    api.on('site:changed', (data) => {
      if (data && typeof data === 'object' && 'exists' in data) r.put(siteView(data as SiteView));
    }),
    api.on('site:secrets', () => void r.load()),
  ];

  async function act<T>(action: SiteAction, fn: () => Promise<T>): Promise<T | null> {
    busy.set(action);
    actionError.set(null);
    try {
      return await fn();
    } catch (err) {
      actionError.set({ action, message: err instanceof Error ? err.message : String(err) });
      return null;
    } finally {
      busy.set(null);
    }
  }

  async function viewAct(action: SiteAction, fn: () => Promise<SiteView>): Promise<boolean> {
    const v = await act(action, fn);
    if (!v) return false;
    r.put(v);
    return true;
  }

  return {
    ...r,
    busy,
    actionError,
    save: (s) => viewAct('save', () => api.site.save(s)),
    importYaml: (yaml) => viewAct('import', () => api.site.import(yaml)),
    exportYaml: () => act('export', () => api.site.export()),
    generateSecrets: () => viewAct('secrets', () => api.site.generateSecrets()),
    dispose: () => {
      for (const off of offs) off();
    },
  };
}
