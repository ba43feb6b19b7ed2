import { derived, type Readable } from 'svelte/store';
import type { Api, ConnectionState } from '../api';

export interface ConnectionView {
  state: ConnectionState;
  label: string;
  detail: string;
}

const views: Record<ConnectionState, Omit<ConnectionView, 'state'>> = {
  connecting: { label: 'Connecting…', detail: 'Reaching the Onramp service.' },
  connected: { label: 'Connected', detail: 'Live updates from the Onramp service.' },
  reconnecting: { label: 'Reconnecting…', detail: 'Lost the live link; trying again.' },
  offline: { label: 'Offline', detail: 'Cannot reach the Onramp service; still retrying.' },
};

export function connectionView(state: ConnectionState): ConnectionView {
  return { state, ...views[state] };
}

/** The live link's state in words, for the indicator in the frame. */
export function createConnectionStore(api: Api): Readable<ConnectionView> {
  return derived(api.connection, connectionView);
}
