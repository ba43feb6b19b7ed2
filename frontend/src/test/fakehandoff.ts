// Fakes of the Handoff and Report services (Go: app/handoff.go,
// app/report.go) for the vitest suites; fakeapi.ts plugs them in.
import { vi } from 'vitest';
import type { HandoffExport, HandoffExportRequest, HandoffView, HandoffWipeRequest, SiteReport } from '../api';

export const FAKE_SHA = '3f2a91c0'.repeat(8);

export function handoffViewOf(over: Partial<HandoffView> = {}): HandoffView {
  return {
    cluster: 'stmary',
    clusterId: 'Q1d2',
    target: 'bundle',
    secrets: true,
    blockers: [],
    contents: ['talosconfig', 'kubeconfig', 'secrets.yaml', 'inventory.json', 'report.json', 'report.html'],
    kubeconfig: true,
    wiped: false,
    canWipe: false,
    ...over,
  };
}

export function fakeHandoffApi(start: HandoffView = handoffViewOf()) {
  let v: HandoffView = structuredClone(start);
  const exp = (req: HandoffExportRequest): HandoffExport => ({
    name: 'stmary-handoff-20261129-150405.age',
    path: '/var/lib/onramp/handoff/stmary-handoff-20261129-150405.age',
    size: 4,
    sha256: FAKE_SHA,
    recipients: req.passphrase ? [] : req.recipients.map((r) => r.split(' ').slice(0, 2).join(' ')),
    passphrase: !!req.passphrase,
    files: v.contents,
    at: '2026-11-29T15:04:05Z',
  });
  return {
    status: vi.fn(async () => structuredClone(v)),
    export: vi.fn(async (req: HandoffExportRequest) => {
      if ((v.blockers ?? []).length) throw new Error(`cannot write the handoff bundle yet: ${(v.blockers ?? []).join('; ')}`);
      if (req.passphrase !== undefined && req.passphrase !== '' && req.passphrase.length < 12) throw new Error('write handoff bundle: passphrase too weak');
      if (!req.passphrase && !req.recipients.length) throw new Error('write handoff bundle: no recipient');
      for (const r of req.recipients) if (!/^(age1|ssh-)/.test(r)) throw new Error('write handoff bundle: recipient 1: not a usable public key');
      const e = exp(req);
      v = { ...v, exported: e, canWipe: true };
      return { ...e, data: btoa('age!') };
    }),
    bundle: vi.fn(async () => {
      if (!v.exported) throw new Error('no handoff bundle was written for this cluster yet');
      return { ...v.exported, data: btoa('age!') };
    }),
    wipe: vi.fn(async (req: HandoffWipeRequest) => {
      if (!v.exported) throw new Error('wipe secrets: write the handoff bundle first');
      if (!req.copied) throw new Error('wipe secrets: confirm that the bundle was copied off this device first');
      if (req.sha256 !== v.exported.sha256) throw new Error('wipe secrets: the bundle you confirmed is not the last one written');
      v = { ...v, secrets: false, wiped: true, wipedAt: '2026-11-29T15:10:00Z', canWipe: false, contents: [], blockers: ['The cluster secrets were wiped from this device after the handoff'] };
      return structuredClone(v);
    }),
  };
}

export function sampleReport(over: Partial<SiteReport> = {}): SiteReport {
  return {
    format: 'onramp-site-report/v1',
    generated: '2026-11-29T15:20:00Z',
    onramp: { version: 'v0.1.0', machinery: 'v1.14.1' },
    site: { name: 'St. Mary lab 2', cluster: 'stmary', clusterId: 'Q1d2' },
    visit: { actors: ['technician'], started: '2026-11-29T14:00:00Z', bootstrapped: true, bootstrapNode: 'cp-1', healthy: true },
    counts: { machines: 2, verified: 1, notVerified: 0, notInstalled: 1 },
    machines: [
      { hostname: 'cp-1', role: 'controlplane', mac: '52:54:00:00:00:11', serial: 'SN-1', state: 'verified', fingerprint: 'FP1', configSha256: 'c3'.repeat(32), evidence: null },
      { hostname: 'worker-1', role: 'worker', mac: '52:54:00:00:00:12', state: 'not-installed' },
    ],
    audit: {
      events: 2,
      headSeq: 2,
      headHash: 'e5'.repeat(32),
      verified: true,
      trail: [
        { seq: 1, time: '2026-11-29T14:00:00Z', actor: 'technician', action: 'install.start', subject: '52:54:00:00:00:11', detail: '{}', hash: 'aa' },
        { seq: 2, time: '2026-11-29T14:20:00Z', actor: 'technician', action: 'install.finish', subject: '52:54:00:00:00:11', detail: '{}', hash: 'e5'.repeat(32) },
      ],
    },
    ...over,
  };
}

export function fakeReportApi(r: SiteReport | Error = sampleReport()) {
  return {
    get: vi.fn(async () => {
      if (r instanceof Error) throw r;
      return structuredClone(r);
    }),
    html: vi.fn(async () => '<!doctype html><title>Site report</title>'),
    json: vi.fn(async () => '{"format":"onramp-site-report/v1"}\n'),
  };
}
