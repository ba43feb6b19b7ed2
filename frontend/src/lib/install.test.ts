import { describe, expect, it } from 'vitest';
import type { NetbootEvent, NodeEvidence } from '../api';
import { installNode, PCR_FPR, sampleSite, UKI_FPR } from '../test/fakeapi';
import { stageLabel } from '../stores/netboot';
import { eventDetail, eventLabel, isProblem, timelineView } from './events';
import {
  blockerStep,
  canInstall,
  fingerprintRows,
  formatMs,
  nodeStateView,
  secureBootHint,
  securityCheck,
  verdict,
  volumeRows,
} from './install';
import { groupFingerprint } from './machine';

function evidence(over: Partial<NodeEvidence> = {}): NodeEvidence {
  return {
    node: '10.77.0.20',
    verified: true,
    reasons: [],
    secureBoot: true,
    bootedWithUKI: true,
    tpmPresent: true,
    ukiSigningKeyFingerprint: UKI_FPR,
    pcrSigningKeyFingerprint: PCR_FPR,
    volumes: [
      { id: 'STATE', phase: 'ready', encryptionProvider: 'luks2', keyTypes: ['tpm'] },
      { id: 'EPHEMERAL', phase: 'ready', encryptionProvider: 'luks2', keyTypes: ['tpm', 'static'] },
    ],
    checkedAt: '2026-11-29T13:10:00Z',
    ...over,
  };
}

const siteWithKeys = () => ({ ...sampleSite(), secureBoot: { ukiSigningKeyFingerprint: UKI_FPR, pcrSigningKeyFingerprint: PCR_FPR } });

describe('blockers point to the step that fixes them', () => {
  const cases: Array<[string, string | null]> = [
    ['Fill in the site first', 'site'],
    ['The site has problems: fix them on the Site step', 'site'],
    ['Generate the cluster secrets on the Site step', 'site'],
    ['Set the expected UKI and PCR signing-key fingerprints on the Site step', 'site'],
    ['SecureBoot is off: enroll the keys first', 'secureboot'],
    ['Not seen on the network yet', 'discover'],
    ['Not in maintenance mode yet', 'discover'],
    ['Start netboot on the Network step', 'network'],
    ['something else entirely', null],
  ];
  for (const [words, step] of cases) {
    it(words, () => expect(blockerStep(words)?.id ?? null).toBe(step));
  }
});

describe('install node state', () => {
  it('words and tones', () => {
    expect(nodeStateView({ state: 'idle', ready: true })).toEqual({ tone: 'ok', label: 'Ready to install' });
    expect(nodeStateView({ state: 'idle', ready: true, blocker: 'SecureBoot is off: enroll the keys first' }).tone).toBe('warn');
    expect(nodeStateView({ state: 'idle', ready: false, blocker: 'Not seen on the network yet' })).toEqual({ tone: '', label: 'Not ready' });
    expect(nodeStateView({ state: 'running', ready: true }).label).toBe('Installing');
    expect(nodeStateView({ state: 'not-verified', ready: false }).tone).toBe('bad');
    expect(nodeStateView({ state: 'failed', ready: true }).tone).toBe('bad');
  });

  it('can be installed when ready with a fingerprint, and again after failing or cancelling', () => {
    expect(canInstall(installNode('a'))).toBe(true);
    expect(canInstall(installNode('a', { fingerprint: '' }))).toBe(false);
    expect(canInstall(installNode('a', { ready: false }))).toBe(false);
    for (const state of ['running', 'installed', 'verified', 'not-verified']) expect(canInstall(installNode('a', { state })), state).toBe(false);
    for (const state of ['failed', 'cancelled']) expect(canInstall(installNode('a', { state })), state).toBe(true);
  });

  it('points a SecureBoot refusal to the SecureBoot step', () => {
    const refusal = 'install: SecureBoot is not enabled, refusing to install a SecureBoot image';
    expect(secureBootHint(installNode('a', { state: 'failed', error: refusal }))).toBe(true);
    expect(secureBootHint(installNode('a', { state: 'failed', error: 'apply config: connection refused' }))).toBe(false);
    expect(secureBootHint(installNode('a', { state: 'failed', error: 'x', secureBoot: 'off' }))).toBe(true);
    expect(secureBootHint(installNode('a', { state: 'idle', secureBoot: 'off' }))).toBe(false);
  });

  it('formats durations', () => {
    expect([undefined, 0, 850, 12_345, 125_000].map(formatMs)).toEqual(['', '', '850 ms', '12.3 s', '2 min 05 s']);
  });
});

describe('verification', () => {
  it('is never green without evidence', () => {
    expect(verdict(undefined)).toBe('not-checked');
    expect(verdict(null)).toBe('not-checked');
    expect(verdict(evidence({ checkedAt: '0001-01-01T00:00:00Z' }))).toBe('not-checked'); // Go's zero time
    expect(verdict(evidence())).toBe('verified');
    expect(verdict(evidence({ verified: false, reasons: ['SecureBoot is off (SecurityState.secureBoot=false)'] }))).toBe('not-verified');
    expect(verdict(evidence({ verified: true, reasons: ['contradiction'] }))).toBe('not-verified');
    for (const k of ['secureBoot', 'bootedWithUKI', 'tpmPresent'] as const) expect(securityCheck(undefined, k)).toBe('unknown');
  });

  it('what could not be read is "not checked", not "no"', () => {
    const ev = evidence({
      verified: false,
      secureBoot: false,
      volumes: [],
      reasons: ['cannot read SecurityState: rpc error: code = Unavailable', 'cannot read VolumeStatus: timeout'],
    });
    expect(securityCheck(ev, 'secureBoot')).toBe('unknown');
    expect(fingerprintRows(ev, siteWithKeys()).map((r) => r.match)).toEqual(['unknown', 'unknown']);
    expect(volumeRows(ev).map((r) => [r.id, r.encrypted])).toEqual([
      ['STATE', 'unknown'],
      ['EPHEMERAL', 'unknown'],
    ]);
    expect(securityCheck(evidence({ secureBoot: false, verified: false }), 'secureBoot')).toBe('no');
  });

  it('compares the expected signing-key fingerprints with the reported ones', () => {
    const other = 'f'.repeat(64);
    const rows = fingerprintRows(evidence({ pcrSigningKeyFingerprint: other }), siteWithKeys());
    expect(rows).toEqual([
      { what: 'UKI', expected: UKI_FPR, reported: UKI_FPR, match: 'match' },
      { what: 'PCR', expected: PCR_FPR, reported: other, match: 'mismatch' },
    ]);
    expect(fingerprintRows(evidence({ ukiSigningKeyFingerprint: UKI_FPR.toUpperCase() }), siteWithKeys())[0]?.match).toBe('match');
    expect(fingerprintRows(evidence(), sampleSite()).map((r) => r.match)).toEqual(['no-expected', 'no-expected']);
    expect(fingerprintRows(evidence({ ukiSigningKeyFingerprint: '' }), siteWithKeys())[0]?.match).toBe('not-reported');
    expect(fingerprintRows(undefined, siteWithKeys()).map((r) => r.match)).toEqual(['unknown', 'unknown']);
  });

  it('lists STATE and EPHEMERAL first, always', () => {
    const rows = volumeRows(
      evidence({
        volumes: [
          { id: 'META', phase: 'ready', encryptionProvider: 'none' },
          { id: 'EPHEMERAL', phase: 'failed', encryptionProvider: 'none', keyTypes: [], error: 'no TPM' },
        ],
      }),
    );
    expect(rows.map((r) => [r.id, r.encrypted, r.tpmSlot, r.ready])).toEqual([
      ['STATE', 'unknown', 'unknown', 'unknown'],
      ['EPHEMERAL', 'no', 'no', 'no'],
      ['META', 'no', 'no', 'yes'],
    ]);
  });
});

describe('fingerprints in groups of four', () => {
  it('splits a 64-hex signing-key fingerprint into 16 groups', () => {
    const g = groupFingerprint(PCR_FPR);
    expect(g).toHaveLength(16);
    expect(g.slice(0, 4)).toEqual(['0123', '4567', '89ab', 'cdef']);
    expect(g.join('')).toBe(PCR_FPR);
  });
});

describe('Talos events on the timeline', () => {
  const ev = (over: Partial<NetbootEvent>): NetbootEvent => ({ time: '2026-11-29T13:00:00Z', kind: 'talos.event', ...over });
  it('labels talos.event by its Talos message type', () => {
    expect(eventLabel(ev({ attrs: { type: 'MachineStatusEvent', stage: 'installing', ready: 'false' }, detail: 'stage: installing' }))).toBe('Talos stage');
    expect(eventLabel(ev({ attrs: { type: 'PhaseEvent' } }))).toBe('Talos phase');
    expect(eventLabel(ev({ attrs: { type: 'ServiceStateEvent' } }))).toBe('Talos service');
    expect(eventLabel(ev({ attrs: { type: 'ConfigValidationErrorEvent' } }))).toBe('Talos config invalid');
    expect(eventLabel(ev({ attrs: { type: 'MachineConfigEvent' } }))).toBe('Talos machine config');
    expect(eventLabel(ev({}))).toBe('Talos event');
    expect(eventLabel(ev({ kind: 'talos.kmsg', detail: 'tpm_tis MSFT0101:00: 2.0 TPM' }))).toBe('Kernel log');
    expect(eventDetail(ev({ detail: 'service etcd: running' }))).toBe('service etcd: running');
  });

  it('marks errors as problems', () => {
    expect(isProblem(ev({ attrs: { type: 'ConfigLoadErrorEvent' }, error: 'config load error: yaml' }))).toBe(true);
    expect(isProblem(ev({ attrs: { type: 'ConfigValidationErrorEvent' } }))).toBe(true);
    expect(isProblem(ev({ attrs: { type: 'PhaseEvent' } }))).toBe(false);
    expect(isProblem(ev({ kind: 'talos.kmsg', attrs: { priority: '3' } }))).toBe(true);
    expect(isProblem(ev({ kind: 'talos.kmsg', attrs: { priority: '6' } }))).toBe(false);
    expect(isProblem(ev({ kind: 'talos.kmsg' }))).toBe(false);
  });

  it('keeps only the last few kernel messages unless asked for all', () => {
    const tl: NetbootEvent[] = [
      ev({ kind: 'dhcp.ack' }),
      ...Array.from({ length: 6 }, (_, i) => ev({ kind: 'talos.kmsg', detail: `k${i}` })),
      ev({ attrs: { type: 'MachineStatusEvent' }, detail: 'stage: installing' }),
      ev({ kind: 'talos.kmsg', detail: 'k6' }),
    ];
    const few = timelineView(tl, false);
    expect(few.hidden).toBe(4);
    expect(few.items.map((x) => x.e.detail ?? x.e.kind)).toEqual(['dhcp.ack', 'k4', 'k5', 'stage: installing', 'k6']);
    expect(few.items.filter((x) => x.kmsg)).toHaveLength(3);
    const all = timelineView(tl, true);
    expect(all.hidden).toBe(0);
    expect(all.items).toHaveLength(tl.length);
    expect(timelineView([], false)).toEqual({ items: [], hidden: 0 });
  });

  it('names the stages after the boot path', () => {
    expect(['maintenance', 'installing', 'running', 'dhcp', 'weird'].map(stageLabel)).toEqual([
      'Talos maintenance',
      'Installing',
      'Running Talos',
      'DHCP',
      'weird',
    ]);
  });
});
