import { get } from 'svelte/store';
import { describe, expect, it } from 'vitest';
import { ApiError, createApi, isMissingMethod } from '../api';
import type { Transport } from '../api/transport';
import { fakeApi, sampleSite, simpleProblems } from '../test/fakeapi';
import { createLabStore, labStateView } from './lab';
import { createSiteStore } from './site';
import { readable } from 'svelte/store';

describe('site store', () => {
  it('starts empty, saves with problems, and reports them', async () => {
    const f = fakeApi({ siteProblems: simpleProblems });
    const s = createSiteStore(f.api);
    await s.load();
    expect(get(s).data).toMatchObject({ exists: false, ready: false, problems: [] });
    const site = { ...sampleSite(), endpoint: 'http://nope' };
    expect(await s.save(site)).toBe(true);
    expect(f.api.site.save).toHaveBeenCalledWith(site);
    expect(get(s).data?.exists).toBe(true);
    expect(get(s).data?.ready).toBe(false);
    expect(get(s).data?.problems).toEqual([{ path: 'endpoint', message: '"http://nope" must look like https://host:6443' }]);
    expect(await s.save(sampleSite())).toBe(true);
    expect(get(s).data?.ready).toBe(true);
  });

  it('imports, exports and generates secrets', async () => {
    const f = fakeApi({ parseYaml: () => sampleSite(), exportYaml: 'cluster: stmary-lab2\n' });
    const s = createSiteStore(f.api);
    expect(await s.exportYaml()).toBeNull();
    expect(get(s.actionError)).toEqual({ action: 'export', message: 'no site yet' });
    expect(await s.importYaml('cluster: stmary-lab2')).toBe(true);
    expect(get(s.actionError)).toBeNull();
    expect(get(s).data?.site?.cluster).toBe('stmary-lab2');
    expect(await s.exportYaml()).toBe('cluster: stmary-lab2\n');
    expect(get(s).data?.secrets).toBe(false);
    expect(await s.generateSecrets()).toBe(true);
    expect(get(s).data?.secrets).toBe(true);
    expect(get(s.busy)).toBeNull();
  });

  it('keeps the site and says why an import failed', async () => {
    const f = fakeApi({ site: sampleSite() });
    const s = createSiteStore(f.api);
    await s.load();
    expect(await s.importYaml('garbage: [')).toBe(false);
    expect(get(s.actionError)?.action).toBe('import');
    expect(get(s.actionError)?.message).toContain('line 1');
    expect(get(s).data?.site?.cluster).toBe('stmary-lab2');
  });

  it('follows site:changed and reloads on site:secrets', async () => {
    const f = fakeApi();
    const s = createSiteStore(f.api);
    await s.load();
    f.emit('site:changed', { exists: true, site: { ...sampleSite(), machines: null }, problems: null, ready: true, secrets: false, pcr11OnlyExplanation: '' });
    expect(get(s).data?.site?.machines).toEqual([]); // Go's nil slice
    expect(get(s).data?.problems).toEqual([]);
    f.emit('site:changed', 'garbage');
    expect(get(s).data?.exists).toBe(true);
    const n = f.api.site.get.mock.calls.length;
    f.emit('site:secrets', { generated: true });
    expect(f.api.site.get.mock.calls.length).toBe(n + 1);
    s.dispose();
    f.emit('site:changed', { exists: false, problems: [], ready: false, secrets: false, pcr11OnlyExplanation: '' });
    expect(get(s).data?.exists).toBe(true);
  });
});

describe('lab store', () => {
  it('says unavailable when the build has no Lab service', async () => {
    const f = fakeApi({ lab: 'missing' });
    const s = createLabStore(f.api);
    expect(get(s).available).toBeNull();
    await s.load();
    expect(get(s)).toMatchObject({ available: false, error: null });
  });

  it('reports other failures as errors, not as missing', async () => {
    const f = fakeApi();
    f.api.lab.status.mockRejectedValueOnce(new ApiError('cannot reach Onramp: Failed to fetch', 'Lab.Status'));
    const s = createLabStore(f.api);
    await s.load();
    expect(get(s)).toMatchObject({ available: null, error: 'cannot reach Onramp: Failed to fetch' });
    await s.load();
    expect(get(s)).toMatchObject({ available: true, error: null });
  });

  it('starts and stops the lab, and follows lab:status', async () => {
    const f = fakeApi();
    const s = createLabStore(f.api);
    await s.load();
    expect(await s.up({ machines: 2, firmware: 'mix', tpm: true })).toBe(true);
    expect(f.api.lab.up).toHaveBeenCalledWith({ machines: 2, firmware: 'mix', tpm: true });
    expect(get(s).status?.machines?.map((m) => m.name)).toEqual(['lab-1', 'lab-2']);
    f.emit('lab:status', { running: true, starting: false, machines: [{ name: 'lab-1', mac: 'x', firmware: 'uefi', state: 'maintenance' }], error: '', prereqsMissing: null });
    expect(get(s).status?.machines?.[0]?.state).toBe('maintenance');
    expect(get(s).status?.prereqsMissing).toEqual([]);
    expect(await s.down()).toBe(true);
    expect(get(s).status?.running).toBe(false);
  });

  it('says why the lab did not start', async () => {
    const f = fakeApi({ labUpError: 'lab up: needs root (network namespaces)' });
    const s = createLabStore(f.api);
    await s.load();
    expect(await s.up({ machines: 1, firmware: 'uefi', tpm: false })).toBe(false);
    expect(get(s)).toMatchObject({ busy: null, actionError: 'lab up: needs root (network namespaces)', available: true });
  });

  it('puts machine states in words', () => {
    expect(['booting', 'maintenance', 'installed', 'failed: no boot device', 'weird', ''].map((x) => labStateView(x))).toEqual([
      { tone: 'accent', label: 'Booting' },
      { tone: 'ok', label: 'Maintenance mode' },
      { tone: 'ok', label: 'Installed' },
      { tone: 'bad', label: 'Failed' },
      { tone: '', label: 'weird' },
      { tone: '', label: 'Unknown' },
    ]);
  });
});

describe('api: Site and Lab', () => {
  function transport(answers: Record<string, unknown>) {
    const calls: Array<[string, string, unknown[]]> = [];
    const t: Transport = {
      kind: 'web',
      call: async <T>(service: string, method: string, args: unknown[]): Promise<T> => {
        calls.push([service, method, args]);
        const a = answers[`${service}.${method}`];
        if (a instanceof Error) throw a;
        return a as T;
      },
      on: () => () => {},
      login: async () => {},
      connection: readable('connected'),
      auth: readable('ok'),
      start: () => {},
      stop: () => {},
    };
    return { t, calls };
  }

  it('maps each function to its Go method and fills Go nil slices', async () => {
    const v = { exists: true, site: { ...sampleSite(), machines: null }, problems: null, ready: true, secrets: false, pcr11OnlyExplanation: 'x' };
    const lab = { running: false, starting: false, machines: null, error: '', prereqsMissing: null };
    const { t, calls } = transport({
      'Site.Get': v,
      'Site.Save': v,
      'Site.Import': v,
      'Site.Export': 'cluster: x\n',
      'Site.GenerateSecrets': v,
      'Lab.Status': lab,
      'Lab.Up': lab,
      'Lab.Down': lab,
    });
    const api = createApi(t);
    const got = await api.site.get();
    expect(got.problems).toEqual([]);
    expect(got.site?.machines).toEqual([]);
    await api.site.save(sampleSite());
    await api.site.import('cluster: x');
    expect(await api.site.export()).toBe('cluster: x\n');
    await api.site.generateSecrets();
    expect(await api.lab.status()).toEqual({ running: false, starting: false, machines: [], error: '', prereqsMissing: [] });
    await api.lab.up({ machines: 3, firmware: 'uefi-secureboot', tpm: true });
    await api.lab.down();
    expect(calls.map(([s, m]) => `${s}.${m}`)).toEqual([
      'Site.Get',
      'Site.Save',
      'Site.Import',
      'Site.Export',
      'Site.GenerateSecrets',
      'Lab.Status',
      'Lab.Up',
      'Lab.Down',
    ]);
    expect(calls[1]?.[2]).toEqual([sampleSite()]);
    expect(calls[2]?.[2]).toEqual(['cluster: x']);
    expect(calls[6]?.[2]).toEqual([{ machines: 3, firmware: 'uefi-secureboot', tpm: true }]);
  });

  const missing: Array<[unknown, boolean]> = [
    [new ApiError('call Lab.Status: no such method', 'Lab.Status', 404), true], // onramp serve
    [new ApiError('Lab.Status is not bound in this build', 'Lab.Status'), true], // Wails
    [new ApiError('unknown method Lab.Status', 'Lab.Status', 404), true], // mock server
    [new ApiError('lab: needs root', 'Lab.Up', 422), false],
    [new Error('cannot reach Onramp: Failed to fetch'), false],
    ['no such method', true],
    [undefined, false],
  ];
  for (const [err, want] of missing) {
    it(`isMissingMethod(${err instanceof Error ? err.message : String(err)}) = ${want}`, () => {
      expect(isMissingMethod(err)).toBe(want);
    });
  }
});
