import { get } from 'svelte/store';
import { describe, expect, it, vi } from 'vitest';
import { fakeApi } from '../test/fakeapi';
import { fakeReportApi, sampleReport } from '../test/fakehandoff';
import { settle } from '../test/fakes';
import { createReportStore, reportName, reportView } from './report';

describe('report store', () => {
  it('names the files after the cluster', () => {
    expect(reportName('St Mary / Lab 2', 'html')).toBe('st-mary-lab-2-site-report.html');
    expect(reportName('', 'json')).toBe('onramp-site-report.json');
  });

  it('makes null lists lists', () => {
    const r = reportView({ ...sampleReport(), machines: null, visit: { ...sampleReport().visit, actors: null }, audit: { ...sampleReport().audit, trail: null } });
    expect(r.machines).toEqual([]);
    expect(r.visit.actors).toEqual([]);
    expect(r.audit.trail).toEqual([]);
  });

  it('loads, saves both files, and reloads when the install or handoff changes', async () => {
    const f = fakeApi();
    const save = vi.fn();
    const s = createReportStore(f.api, save);
    await s.load();
    expect(get(s).report?.audit.headHash).toBe('e5'.repeat(32));
    expect(await s.save('html')).toBe(true);
    expect(save).toHaveBeenCalledWith('stmary-site-report.html', '<!doctype html><title>Site report</title>', 'text/html');
    expect(await s.save('json')).toBe(true);
    expect(save).toHaveBeenLastCalledWith('stmary-site-report.json', expect.stringContaining('onramp-site-report/v1'), 'application/json');
    f.emit('handoff:changed', {});
    await settle();
    expect(f.api.report.get).toHaveBeenCalledTimes(2);
    s.dispose();
    f.emit('install:changed', {});
    await settle();
    expect(f.api.report.get).toHaveBeenCalledTimes(2);
  });

  it('says why there is no report', async () => {
    const f = fakeApi();
    f.api.report = fakeReportApi(new Error('no site yet: fill in the Site step first'));
    const s = createReportStore(f.api);
    await s.load();
    expect(get(s).error).toContain('no site yet');
  });
});
