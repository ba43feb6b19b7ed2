import { readable, type Readable } from 'svelte/store';
import { STEPS, type RouteId } from './steps';

export const DEFAULT_ROUTE: RouteId = 'site';

const ids = new Set<string>(STEPS.map((s) => s.id));

export interface Route {
  id: RouteId;
  /** True when the hash named no known page and we fell back. */
  fallback: boolean;
}

/**
 * parseHash maps `#/system`, `#system`, `#/System/`, `#/system?x=1` to a
 * route id. Anything else falls back to the first step.
 */
export function parseHash(hash: string): Route {
  const path = hash.replace(/^#/, '').replace(/^\/+/, '').split(/[/?]/)[0]?.toLowerCase() ?? '';
  if (ids.has(path)) return { id: path as RouteId, fallback: false };
  return { id: DEFAULT_ROUTE, fallback: path !== '' };
}

export function href(id: RouteId): string {
  return `#/${id}`;
}

type HashWindow = Pick<Window, 'addEventListener' | 'removeEventListener'> & { location: { hash: string } };

/** The current route, following the location hash. */
export function createRouter(w: HashWindow): Readable<Route> {
  return readable(parseHash(w.location.hash), (set) => {
    set(parseHash(w.location.hash));
    const onChange = (): void => set(parseHash(w.location.hash));
    w.addEventListener('hashchange', onChange);
    return () => w.removeEventListener('hashchange', onChange);
  });
}
