import { getContext } from 'svelte';
import type { Readable } from 'svelte/store';
import type { Api } from '../api';
import { createConnectionStore, type ConnectionView } from '../stores/connection';
import { createNetworkStore, type NetworkStore } from '../stores/network';
import {
  createMachinesStore,
  createNetbootStore,
  createProbeStore,
  type MachinesStore,
  type NetbootStore,
} from '../stores/netboot';
import { createInstallStore, type InstallStore } from '../stores/install';
import { createLabStore, type LabStore } from '../stores/lab';
import { createSessionStore, type SessionStore } from '../stores/session';
import { createSettingsStore, type SettingsStore } from '../stores/settings';
import { createSiteStore, type SiteStore } from '../stores/site';
import { createSystemStore, type SystemStore } from '../stores/system';

/** Everything the UI needs, built once from the api and handed down. */
export interface AppState {
  api: Api;
  system: SystemStore;
  network: NetworkStore;
  settings: SettingsStore;
  session: SessionStore;
  connection: Readable<ConnectionView>;
  netboot: NetbootStore;
  machines: MachinesStore;
  probe: ReturnType<typeof createProbeStore>;
  site: SiteStore;
  lab: LabStore;
  install: InstallStore;
}

export function createAppState(api: Api): AppState {
  return {
    api,
    system: createSystemStore(api),
    network: createNetworkStore(api),
    settings: createSettingsStore(api),
    session: createSessionStore(api),
    connection: createConnectionStore(api),
    netboot: createNetbootStore(api),
    machines: createMachinesStore(api),
    probe: createProbeStore(api),
    site: createSiteStore(api),
    lab: createLabStore(api),
    install: createInstallStore(api),
  };
}

const KEY = Symbol('onramp.app');

/** The context map to mount the app with (see main.ts and tests). */
export function appContext(state: AppState): Map<unknown, unknown> {
  return new Map<unknown, unknown>([[KEY, state]]);
}

/** The app state, from a component inside the mounted app. */
export function useApp(): AppState {
  const s = getContext<AppState | undefined>(KEY);
  if (!s) throw new Error('onramp: app state missing from context');
  return s;
}
