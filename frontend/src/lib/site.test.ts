import { describe, expect, it } from 'vitest';
import { sampleSite } from '../test/fakeapi';
import { exportName } from './download';
import {
  cleanSite,
  diskSummary,
  emptyMachine,
  emptySite,
  fieldFor,
  formFields,
  machineProblems,
  normalizeSite,
  parentPath,
  pathLabel,
  placeProblems,
  sameSite,
  splitList,
} from './site';

describe('problem paths → form fields', () => {
  const fields = formFields(2);
  const cases: Array<[string, string | null]> = [
    ['endpoint', 'endpoint'],
    ['cluster', 'cluster'],
    ['encryption.pcrs', 'encryption.pcrs'],
    ['network.nameservers[1]', 'network.nameservers'],
    ['network.bond.links[0]', null],
    ['registryMirrors[0].endpoints[0]', null],
    ['handoff.omni.apiUrl', 'handoff.omni.apiUrl'],
    ['handoff.omni', 'handoff.omni'],
    ['installDisk.minSize', 'installDisk.minSize'],
    ['machines', 'machines'],
    ['machines[0]', 'machines[0]'],
    ['machines[1].hostname', 'machines[1].hostname'],
    ['machines[1].installDisk', 'machines[1].installDisk'],
    ['machines[1].installDisk.serial', 'machines[1].installDisk.serial'],
    ['machines[0].addressing.gateway', 'machines[0].addressing.gateway'],
    ['machines[0].labels.assetTag', 'machines[0].labels.assetTag'],
    ['machines[0].labels.other', 'machines[0]'],
    // a machine the form no longer has (removed since the save)
    ['machines[5].hostname', 'machines'],
  ];
  for (const [path, want] of cases) {
    it(`${path} → ${want ?? 'summary only'}`, () => {
      expect(fieldFor(path, fields)).toBe(want);
    });
  }

  it('parentPath drops one segment', () => {
    expect(['a.b[2]', 'a.b', 'a', 'machines[0]', ''].map(parentPath)).toEqual(['a.b', 'a', '', 'machines', '']);
  });

  it('groups problems by field, unplaced under ""', () => {
    const placed = placeProblems(
      [
        { path: 'endpoint', message: 'is required' },
        { path: 'network.nameservers[0]', message: '"x" is not an IP address' },
        { path: 'network.nameservers[2]', message: '"y" is not an IP address' },
        { path: 'registryMirrors[0].registry', message: 'bad' },
      ],
      fields,
    );
    expect(placed.get('endpoint')?.map((p) => p.message)).toEqual(['is required']);
    expect(placed.get('network.nameservers')).toHaveLength(2);
    expect(placed.get('')?.map((p) => p.path)).toEqual(['registryMirrors[0].registry']);
  });

  it('finds every problem inside one machine', () => {
    const ps = [
      { path: 'machines[1]', message: 'set mac or uuid' },
      { path: 'machines[1].hostname', message: 'is required' },
      { path: 'machines[10].hostname', message: 'is required' },
      { path: 'machines', message: 'at least one control plane' },
    ];
    expect(machineProblems(ps, 1).map((p) => p.path)).toEqual(['machines[1]', 'machines[1].hostname']);
  });

  it('puts paths in words', () => {
    const s = sampleSite();
    expect(pathLabel('endpoint', s)).toBe('API endpoint');
    expect(pathLabel('machines[0].hostname', s)).toBe('Machine 1 (cp-1) · Hostname');
    expect(pathLabel('machines[1].installDisk.wwid', s)).toBe('Machine 2 (worker-1) · Install disk WWID');
    expect(pathLabel('machines[7]', s)).toBe('Machine 8');
    expect(pathLabel('network.nameservers[1]', s)).toBe('DNS servers (#2)');
    expect(pathLabel('installDisk.minSize', s)).toBe('Default install disk Min size');
    expect(pathLabel('something.new', s)).toBe('something.new');
  });
});

describe('draft ↔ saved site', () => {
  it('normalize then clean gives back what Go sent', () => {
    const s = sampleSite();
    const back = cleanSite(normalizeSite(s));
    expect(back).toEqual({ ...s, handoff: { target: 'bundle' } });
    expect(sameSite(normalizeSite(s), s)).toBe(true);
  });

  it('cleans what the form leaves behind', () => {
    const d = emptySite();
    d.cluster = 'c1';
    d.endpoint = 'https://10.0.0.1:6443';
    d.network.nameservers = [];
    const m = emptyMachine('controlplane');
    m.hostname = 'cp-1';
    m.mac = ' 52:54:00:00:00:01 ';
    m.addressing = { mode: 'dhcp', address: '10.0.0.5/24', gateway: '10.0.0.1' }; // hidden when DHCP: dropped
    m.installDisk = { serial: '', model: 'QEMU HARDDISK' };
    d.machines = [m];
    expect(cleanSite(d)).toEqual({
      cluster: 'c1',
      endpoint: 'https://10.0.0.1:6443',
      network: {},
      encryption: { pcrs: '7+11', recovery: {} },
      handoff: { target: 'bundle' },
      events: {},
      machines: [
        { mac: '52:54:00:00:00:01', role: 'controlplane', hostname: 'cp-1', addressing: { mode: 'dhcp' }, labels: {}, installDisk: { model: 'QEMU HARDDISK' } },
      ],
    });
  });

  it('keeps an Omni block only when used', () => {
    const d = emptySite();
    d.handoff = { target: 'none', omni: { apiUrl: '', joinToken: '' } };
    expect(cleanSite(d).handoff).toEqual({});
    d.handoff = { target: 'omni', omni: { apiUrl: '', joinToken: '' } };
    expect(cleanSite(d).handoff).toEqual({ target: 'omni', omni: { apiUrl: '', joinToken: '' } });
  });

  it('lists and summaries', () => {
    expect(splitList(' 10.0.0.1, 10.0.0.2\n10.0.0.3 ,')).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    expect(diskSummary({ serial: 'S1', minSize: '100GB', maxSize: '2TB' })).toBe('serial S1, ≥ 100GB, ≤ 2TB');
    expect(diskSummary(undefined)).toBe('');
    expect(exportName('StMary Lab2')).toBe('stmary-lab2-site.yaml');
    expect(exportName('')).toBe('onramp-site.yaml');
  });
});
