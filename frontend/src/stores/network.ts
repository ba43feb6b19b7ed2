import type { Api, NetInterface } from '../api';
import { resource, type Resource } from './resource';

export type NetworkStore = Resource<NetInterface[]>;

export function createNetworkStore(api: Api): NetworkStore {
  return resource(() => api.network.interfaces());
}

/**
 * Order for the picker: likely cart switch first, then wired with link up,
 * then the rest; loopback last. Stable by name within a group.
 */
export function sortInterfaces(list: readonly NetInterface[]): NetInterface[] {
  const rank = (n: NetInterface): number => {
    if (n.loopback) return 5;
    if (n.cartHint) return 0;
    if (n.up && !n.wireless && !n.virtual) return 1;
    if (n.up) return 2;
    if (!n.virtual) return 3;
    return 4;
  };
  return [...list].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
}
