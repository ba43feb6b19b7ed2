import type { Api, SystemInfo } from '../api';
import { resource, type Resource } from './resource';

export type SystemStore = Resource<SystemInfo> & { dispose(): void };

/** System.Info, refreshed by the `system:info` event when Go pushes one. */
export function createSystemStore(api: Api): SystemStore {
  const r = resource(() => api.system.info());
  const off = api.on('system:info', (data) => {
    if (data && typeof data === 'object' && 'dataDir' in data) r.put(data as SystemInfo);
  });
  return { ...r, dispose: off };
}
