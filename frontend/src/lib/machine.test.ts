import { describe, expect, it } from 'vitest';
import { machine, sampleSite } from '../test/fakeapi';
import { discoverSummary, firmwareLine, groupFingerprint, hardwareLine, machineDisks, secureBootFact, siteMachineFor, tpmFact } from './machine';

describe('discovered machine facts', () => {
  it('groups the fingerprint by four', () => {
    expect(groupFingerprint('q2Xk7zQ0bW1dN3hT5mVc8aR9yL2pF6sJ4uE0iO7tA1k=')).toEqual([
      'q2Xk', '7zQ0', 'bW1d', 'N3hT', '5mVc', '8aR9', 'yL2p', 'F6sJ', '4uE0', 'iO7t', 'A1k=',
    ]);
    expect(groupFingerprint(undefined)).toEqual([]);
    expect(groupFingerprint('ab cd e')).toEqual(['abcd', 'e']);
  });

  const sb = [
    { v: 'on', tone: 'ok', label: 'SecureBoot on', words: false },
    { v: 'off', tone: 'warn', label: 'SecureBoot off', words: true },
  ];
  for (const c of sb) {
    it(`SecureBoot ${c.v}`, () => {
      const f = secureBootFact(machine('aa', { attrs: { secureBoot: c.v } }));
      expect(f?.tone).toBe(c.tone);
      expect(f?.label).toBe(c.label);
      expect(!!f?.words).toBe(c.words);
    });
  }

  it('says nothing it does not know', () => {
    const m = machine('aa');
    expect([secureBootFact(m), tpmFact(m)]).toEqual([null, null]);
    expect(hardwareLine(m)).toBe('');
    expect(machineDisks(m)).toEqual({ list: [], more: 0 });
  });

  it('TPM, hardware, firmware and disks', () => {
    const m = machine('aa', {
      arch: 'x86-64 UEFI',
      attrs: { tpm: 'absent', vendor: 'Dell Inc.', product: 'PowerEdge R650', uki: 'true', disks: '6', disk0: '/dev/sda 447.1 GiB S5GX', disk1: '/dev/sdb 447.1 GiB S5GY' },
    });
    expect(tpmFact(m)?.label).toBe('No TPM');
    expect(tpmFact(m)?.tone).toBe('warn');
    expect(tpmFact(machine('bb', { attrs: { tpm: 'present' } }))?.tone).toBe('ok');
    expect(hardwareLine(m)).toBe('Dell Inc. PowerEdge R650');
    expect(firmwareLine(m)).toBe('x86-64 UEFI · booted a signed UKI');
    expect(machineDisks(m)).toEqual({ list: ['/dev/sda 447.1 GiB S5GX', '/dev/sdb 447.1 GiB S5GY'], more: 4 });
  });
});

describe('discovered machine ↔ site machine', () => {
  const site = sampleSite();
  const cases: Array<[string, Parameters<typeof machine>[1], string | null]> = [
    ['52:54:00:00:00:01', {}, 'cp-1'],
    ['52-54-00-00-00-01'.toUpperCase(), {}, 'cp-1'], // other spelling of the MAC
    ['aa:bb:cc:dd:ee:ff', { uuid: '4C4C4544-0042-3510-8051-B4C04F4A4A31' }, 'worker-1'], // DHCP option 97
    ['aa:bb:cc:dd:ee:ff', { attrs: { uuid: '4c4c4544-0042-3510-8051-b4c04f4a4a31' } }, 'worker-1'], // SMBIOS via Talos
    ['aa:bb:cc:dd:ee:ff', {}, null],
  ];
  for (const [mac, over, want] of cases) {
    it(`${mac} ${JSON.stringify(over)} → ${want}`, () => {
      expect(siteMachineFor(machine(mac, over), site)?.machine.hostname ?? null).toBe(want);
    });
  }
  it('no site, no match', () => {
    expect(siteMachineFor(machine('52:54:00:00:00:01'), undefined)).toBeNull();
  });
  it('counts machines in maintenance and those needing attention', () => {
    expect(
      discoverSummary([
        machine('a', { stage: 'maintenance', attrs: { secureBoot: 'on', tpm: 'present' } }),
        machine('b', { stage: 'maintenance', attrs: { secureBoot: 'off', tpm: 'present' } }),
        machine('c', { stage: 'tftp', problem: 'refused' }),
        machine('d', { stage: 'http' }),
      ]),
    ).toEqual({ maintenance: 2, attention: 2 });
  });
});
