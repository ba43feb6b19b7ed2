import { get } from 'svelte/store';
import { describe, expect, it } from 'vitest';
import { createApi, installView as normalize } from '../api';
import type { Transport } from '../api/transport';
import { FP1, fakeApi, installNode, installSteps, installView } from '../test/fakeapi';
import { createInstallStore, isConfirmed } from './install';

describe('install store', () => {
  it('loads the view and follows install:changed', async () => {
    const f = fakeApi({ install: installView({ nodes: [installNode('aa')], blockers: ['Generate the cluster secrets on the Site step'] }) });
    const s = createInstallStore(f.api);
    expect(get(s).available).toBeNull();
    await s.load();
    expect(get(s).available).toBe(true);
    expect(get(s).view?.blockers).toEqual(['Generate the cluster secrets on the Site step']);
    f.emit('install:changed', { ...installView({ nodes: [installNode('aa', { state: 'running', step: 'apply' })] }), blockers: null });
    expect(get(s).view?.nodes?.[0]?.state).toBe('running');
    expect(get(s).view?.blockers).toEqual([]); // Go's nil list is an empty list
    f.emit('install:changed', 'not a view');
    expect(get(s).view?.nodes?.[0]?.state).toBe('running');
    s.dispose();
    f.emit('install:changed', installView());
    expect(get(s).view?.nodes).toHaveLength(1);
  });

  it('says unavailable when the build has no Install service', async () => {
    const f = fakeApi({ install: 'missing' });
    const s = createInstallStore(f.api);
    await s.load();
    expect(get(s)).toMatchObject({ available: false, error: null });
  });

  it('starts only confirmed machines, pinned to the confirmed fingerprint', async () => {
    const a = installNode('aa');
    const b = installNode('bb', { hostname: 'worker-1', fingerprint: 'other/fp=' });
    const f = fakeApi({ install: installView({ nodes: [a, b] }) });
    const s = createInstallStore(f.api);
    await s.load();
    expect(await s.start([a, b])).toBe(false); // nothing confirmed: nothing sent
    expect(f.api.install.start).not.toHaveBeenCalled();

    s.confirm(a, true);
    expect(isConfirmed(get(s), a)).toBe(true);
    expect(isConfirmed(get(s), b)).toBe(false);
    expect(await s.start([a, b])).toBe(true);
    expect(f.api.install.start).toHaveBeenCalledWith({ machines: [{ mac: 'aa', fingerprint: FP1 }] });
    expect(get(s).view?.nodes?.[0]).toMatchObject({ state: 'running', step: 'config' });
    expect(get(s).busy).toBeNull();
  });

  it('a confirmation no longer counts once the node shows another fingerprint', async () => {
    const a = installNode('AA:BB');
    const f = fakeApi({ install: installView({ nodes: [a] }) });
    const s = createInstallStore(f.api);
    await s.load();
    s.confirm(a, true);
    expect(isConfirmed(get(s), { ...a, mac: 'aa:bb' })).toBe(true); // MAC case does not matter
    expect(isConfirmed(get(s), { ...a, fingerprint: 'rediscovered=' })).toBe(false);
    expect(isConfirmed(get(s), { ...a, fingerprint: '' })).toBe(false);
    s.confirm(a, false);
    expect(isConfirmed(get(s), a)).toBe(false);
  });

  it('a confirmation is for one attempt: a run that ends (here: failed) drops it', async () => {
    const a = installNode('aa');
    const b = installNode('bb');
    const f = fakeApi({ install: installView({ nodes: [a, b] }) });
    const s = createInstallStore(f.api);
    await s.load();
    s.confirm(a, true);
    s.confirm(b, true);
    f.emit('install:changed', installView({ nodes: [{ ...a, state: 'running' }, b] }));
    expect(isConfirmed(get(s), a)).toBe(true);
    f.emit('install:changed', installView({ nodes: [{ ...a, state: 'failed', error: 'refused' }, b] }));
    expect(isConfirmed(get(s), a)).toBe(false);
    expect(isConfirmed(get(s), b)).toBe(true); // never ran: still confirmed
    s.confirm(a, true); // confirmed again for a retry, and it stays while the node shows "failed"
    f.emit('install:changed', installView({ nodes: [{ ...a, state: 'failed', error: 'refused' }, b] }));
    expect(isConfirmed(get(s), a)).toBe(true);
  });

  it('keeps the refusal of a bad request verbatim', async () => {
    const a = installNode('aa');
    const f = fakeApi({ install: installView({ nodes: [a] }), installStartError: 'install aa: the fingerprint changed: rediscover' });
    const s = createInstallStore(f.api);
    await s.load();
    s.confirm(a, true);
    expect(await s.start([a])).toBe(false);
    expect(get(s).actionError).toEqual({ action: 'start', macs: ['aa'], message: 'install aa: the fingerprint changed: rediscover' });
    expect(get(s).available).toBe(true);
  });

  it('cancels and verifies by MAC', async () => {
    const f = fakeApi({ install: installView({ nodes: [installNode('aa', { state: 'running' })] }) });
    const s = createInstallStore(f.api);
    await s.load();
    expect(await s.cancel('aa')).toBe(true);
    expect(f.api.install.cancel).toHaveBeenCalledWith('aa');
    expect(get(s).view?.nodes?.[0]?.state).toBe('cancelled');
    expect(await s.verify('aa')).toBe(true);
    expect(f.api.install.verify).toHaveBeenCalledWith('aa');
  });
});

describe('install api', () => {
  it('calls Install.* with the contract shapes and fills in Go nil lists', async () => {
    const calls: Array<[string, string, unknown[]]> = [];
    const answer = {
      nodes: [
        {
          ...installNode('aa'),
          steps: null,
          evidence: { node: '10.77.0.20', verified: false, reasons: null, secureBoot: true, bootedWithUKI: true, tpmPresent: true, ukiSigningKeyFingerprint: '', pcrSigningKeyFingerprint: '', volumes: [{ id: 'STATE', phase: 'ready', encryptionProvider: 'luks2', keyTypes: null }], checkedAt: '2026-11-29T13:00:00Z' },
        },
      ],
      blockers: null,
      bootstrapped: false,
      healthy: false,
      kubeconfig: false,
    };
    const t: Transport = {
      kind: 'web',
      call: async <T,>(service: string, method: string, args: unknown[]) => {
        calls.push([service, method, args]);
        return answer as T;
      },
      on: () => () => {},
      login: async () => {},
      connection: { subscribe: () => () => {} },
      auth: { subscribe: () => () => {} },
      start: () => {},
      stop: () => {},
    };
    const api = createApi(t);
    const v = await api.install.status();
    expect(v.blockers).toEqual([]);
    expect(v.nodes?.[0]?.steps).toEqual([]);
    expect(v.nodes?.[0]?.evidence?.reasons).toEqual([]);
    expect(v.nodes?.[0]?.evidence?.volumes?.[0]?.keyTypes).toEqual([]);
    await api.install.start({ machines: [{ mac: 'aa', fingerprint: FP1 }] });
    await api.install.cancel('aa');
    await api.install.verify('aa');
    expect(calls).toEqual([
      ['Install', 'Status', []],
      ['Install', 'Start', [{ machines: [{ mac: 'aa', fingerprint: FP1 }] }]],
      ['Install', 'Cancel', ['aa']],
      ['Install', 'Verify', ['aa']],
    ]);
    expect(normalize({ nodes: null, blockers: null, bootstrapped: true, healthy: true, kubeconfig: true }).nodes).toEqual([]);
    expect(installSteps({ config: 'done' })?.map((s) => s.name)).toEqual(['config', 'apply', 'install', 'bootstrap', 'health', 'verify']);
  });
});
