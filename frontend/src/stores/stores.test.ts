import { get } from 'svelte/store';
import { describe, expect, it } from 'vitest';
import { fakeApi, nic, sampleInfo } from '../test/fakeapi';
import { connectionView, createConnectionStore } from './connection';
import { createNetworkStore, sortInterfaces } from './network';
import { resource } from './resource';
import { createSettingsStore } from './settings';
import { createSystemStore } from './system';

describe('resource', () => {
  it('loads, shares a request in flight, and keeps good data on a failed reload', async () => {
    let n = 0;
    let failNext = false;
    const r = resource(
      async () => {
        n++;
        if (failNext) throw new Error('link down');
        return n;
      },
      () => 1000,
    );
    expect(get(r)).toEqual({ data: null, error: null, loading: false, loadedAt: 0 });
    const a = r.load();
    const b = r.load();
    expect(a).toBe(b);
    expect(get(r).loading).toBe(true);
    await a;
    expect(n).toBe(1);
    expect(get(r)).toEqual({ data: 1, error: null, loading: false, loadedAt: 1000 });

    failNext = true;
    await r.load();
    expect(get(r)).toEqual({ data: 1, error: 'link down', loading: false, loadedAt: 1000 });

    failNext = false;
    await r.load();
    expect(get(r).data).toBe(3);
    expect(get(r).error).toBeNull();
  });
});

describe('system store', () => {
  it('loads System.Info and follows system:info events', async () => {
    const { api, emit } = fakeApi();
    const s = createSystemStore(api);
    await s.load();
    expect(get(s).data).toEqual(sampleInfo);
    emit('system:info', { ...sampleInfo, root: true });
    expect(get(s).data?.root).toBe(true);
    emit('system:info', 'garbage'); // ignored
    expect(get(s).data?.root).toBe(true);
    s.dispose();
    emit('system:info', { ...sampleInfo, root: false });
    expect(get(s).data?.root).toBe(true);
  });

  it('shows the error message', async () => {
    const { api } = fakeApi({ info: () => Promise.reject(new Error('cannot reach Onramp: Failed to fetch')) });
    const s = createSystemStore(api);
    await s.load();
    expect(get(s).error).toBe('cannot reach Onramp: Failed to fetch');
    expect(get(s).data).toBeNull();
  });
});

describe('settings store', () => {
  it('saves a change merged into the current settings', async () => {
    const { api } = fakeApi({ settings: { theme: 'dark', iface: '', netbootMode: 'proxy' } });
    const s = createSettingsStore(api);
    expect(await s.save({ iface: 'enp3s0' })).toBe(true); // loads first
    expect(api.settings.set).toHaveBeenCalledWith({ theme: 'dark', iface: 'enp3s0', netbootMode: 'proxy' });
    expect(get(s).data).toEqual({ theme: 'dark', iface: 'enp3s0', netbootMode: 'proxy' });
    expect(get(s).saving).toBe(false);
    expect(get(s).saveError).toBeNull();
  });

  it('keeps the old settings and reports a rejected save', async () => {
    const { api } = fakeApi({ setError: 'settings: interface "nope" does not exist' });
    const s = createSettingsStore(api);
    await s.load();
    expect(await s.save({ iface: 'nope' })).toBe(false);
    expect(get(s).saveError).toBe('settings: interface "nope" does not exist');
    expect(get(s).data?.iface).toBe('');
  });
});

describe('network', () => {
  it('loads the interfaces', async () => {
    const { api } = fakeApi({ interfaces: async () => [nic('eth1')] });
    const s = createNetworkStore(api);
    await s.load();
    expect(get(s).data?.map((n) => n.name)).toEqual(['eth1']);
  });

  it('sorts cart switch first, loopback last', () => {
    const list = [
      nic('lo', { loopback: true, virtual: true }),
      nic('wlan0', { wireless: true }),
      nic('docker0', { virtual: true, up: false }),
      nic('eth0', { up: true }),
      nic('eth2', { up: false }),
      nic('enx00e04c', { cartHint: true }),
    ];
    expect(sortInterfaces(list).map((n) => n.name)).toEqual(['enx00e04c', 'eth0', 'wlan0', 'eth2', 'docker0', 'lo']);
    expect(list[0]?.name).toBe('lo'); // input untouched
  });
});

describe('connection', () => {
  it('puts the state in words and follows the transport', () => {
    const { api, connection } = fakeApi();
    const s = createConnectionStore(api);
    expect(get(s).label).toBe('Connected');
    connection.set('reconnecting');
    expect(get(s)).toEqual(connectionView('reconnecting'));
    expect(get(s).label).toBe('Reconnecting…');
    connection.set('offline');
    expect(get(s).label).toBe('Offline');
  });
});
