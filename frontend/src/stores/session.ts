import type { Api, Session } from '../api';
import { resource, type Resource } from './resource';

export type SessionStore = Resource<Session>;

/** How the UI is shown (desktop, kiosk, web) and whether a PIN is needed. */
export function createSessionStore(api: Api): SessionStore {
  return resource(() => api.shell.session());
}
