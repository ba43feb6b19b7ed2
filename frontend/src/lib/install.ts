// What the Install and Verify steps show, in words and tones the technician
// can act on. Pure functions over the Install service's view (app/install.go)
// and the node evidence (talos/node.Evidence).

import type { InstallNode, InstallStep, NodeEvidence, NodeVolume, Site } from '../api';
import type { RouteId } from './steps';

export type Tone = 'ok' | 'warn' | 'bad' | 'accent' | '';

/** The step that fixes a blocker, from its plain words ("… on the Site step"). */
export function blockerStep(blocker: string): { id: RouteId; label: string } | null {
  const b = blocker.toLowerCase();
  if (/secureboot step|enroll the keys|secureboot is off/.test(b)) return { id: 'secureboot', label: 'Go to SecureBoot' };
  if (/site step|fill in the site|the site has problems|cluster secrets|signing-key fingerprint/.test(b)) return { id: 'site', label: 'Go to Site' };
  if (/netboot|network step/.test(b)) return { id: 'network', label: 'Go to Network' };
  if (/seen on the network|maintenance mode|discover/.test(b)) return { id: 'discover', label: 'Go to Discover' };
  return null;
}

/** A stable key and DOM id for a node: its MAC, else its SMBIOS UUID (a site machine may be listed by UUID only). */
export function nodeKey(n: Pick<InstallNode, 'mac' | 'uuid' | 'hostname'>): string {
  return n.mac || n.uuid || n.hostname;
}

/** A node's install state in words. */
export function nodeStateView(n: Pick<InstallNode, 'state' | 'ready' | 'blocker'>): { tone: Tone; label: string } {
  switch (n.state) {
    case 'running':
      return { tone: 'accent', label: 'Installing' };
    case 'installed':
      return { tone: 'ok', label: 'Installed' };
    case 'verified':
      return { tone: 'ok', label: 'Installed and verified' };
    case 'not-verified':
      return { tone: 'bad', label: 'Installed, not verified' };
    case 'failed':
      return { tone: 'bad', label: 'Failed' };
    case 'cancelled':
      return { tone: 'warn', label: 'Cancelled' };
    default:
      if (n.ready) return { tone: n.blocker ? 'warn' : 'ok', label: 'Ready to install' };
      return { tone: '', label: 'Not ready' };
  }
}

/** Whether a node's install has been started at some point (the step list is worth showing). */
export function hasRun(n: InstallNode): boolean {
  return n.state !== 'idle' || (n.steps ?? []).some((s) => s.state !== 'pending');
}

/** Installing again is possible: ready, and not running or done. */
export function canInstall(n: InstallNode): boolean {
  return n.ready && !!n.mac && !!n.fingerprint && (n.state === 'idle' || n.state === 'failed' || n.state === 'cancelled');
}

export function stepTone(s: InstallStep): Tone {
  switch (s.state) {
    case 'done':
      return 'ok';
    case 'running':
      return 'accent';
    case 'failed':
      return 'bad';
    default:
      return '';
  }
}

export function stepStateWords(state: string): string {
  switch (state) {
    case 'pending':
      return 'Waiting';
    case 'running':
      return 'Running';
    case 'done':
      return 'Done';
    case 'failed':
      return 'Failed';
    case 'skipped':
      return 'Skipped';
    default:
      return state;
  }
}

/** "850 ms", "12.3 s", "2 min 05 s"; '' for nothing. */
export function formatMs(ms: number | undefined): string {
  if (!ms || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${String(Math.round(s - m * 60)).padStart(2, '0')} s`;
}

/** The failure is Talos refusing for SecureBoot reasons: point to the SecureBoot step. */
export function secureBootHint(n: InstallNode): boolean {
  return n.state === 'failed' && (/secure ?boot/i.test(n.error ?? '') || n.secureBoot === 'off');
}

export function roleWords(role: string): string {
  return role === 'controlplane' ? 'Control plane' : role === 'worker' ? 'Worker' : role || 'No role';
}

// ---- verification ---------------------------------------------------------

/** Verified only on evidence that says so; no evidence is "not checked", never green. */
export type Verdict = 'verified' | 'not-verified' | 'not-checked';

/** Evidence exists and was taken (Go's zero time means never). */
export function wasChecked(ev: NodeEvidence | null | undefined): ev is NodeEvidence {
  if (!ev?.checkedAt) return false;
  const t = Date.parse(ev.checkedAt);
  return Number.isFinite(t) && new Date(t).getUTCFullYear() >= 2000;
}

export function verdict(ev: NodeEvidence | null | undefined): Verdict {
  if (!wasChecked(ev)) return 'not-checked';
  return ev.verified === true && (ev.reasons ?? []).length === 0 ? 'verified' : 'not-verified';
}

/** yes / no on evidence, 'unknown' when there is none or it could not be read. */
export type Check = 'yes' | 'no' | 'unknown';

const securityUnread = (ev: NodeEvidence): boolean => (ev.reasons ?? []).some((r) => /cannot read SecurityState/i.test(r));
const volumesUnread = (ev: NodeEvidence): boolean => (ev.reasons ?? []).some((r) => /cannot read VolumeStatus/i.test(r));

export function securityCheck(ev: NodeEvidence | null | undefined, key: 'secureBoot' | 'bootedWithUKI' | 'tpmPresent'): Check {
  if (!wasChecked(ev) || securityUnread(ev)) return 'unknown';
  return ev[key] === true ? 'yes' : 'no';
}

export type FingerprintMatch = 'match' | 'mismatch' | 'no-expected' | 'not-reported' | 'unknown';

export interface FingerprintRow {
  what: 'UKI' | 'PCR';
  expected: string;
  reported: string;
  match: FingerprintMatch;
}

const normFp = (s: string | undefined): string => (s ?? '').trim().toLowerCase().replace(/[\s:]/g, '');

/** Expected (the site's) against reported (the node's) signing-key fingerprints. */
export function fingerprintRows(ev: NodeEvidence | null | undefined, site: Site | undefined): FingerprintRow[] {
  const exp = site?.secureBoot ?? {};
  const rows: Array<[FingerprintRow['what'], string, string | undefined]> = [
    ['UKI', exp.ukiSigningKeyFingerprint ?? '', ev?.ukiSigningKeyFingerprint],
    ['PCR', exp.pcrSigningKeyFingerprint ?? '', ev?.pcrSigningKeyFingerprint],
  ];
  return rows.map(([what, expected, reported]) => {
    let match: FingerprintMatch;
    if (!wasChecked(ev) || securityUnread(ev)) match = 'unknown';
    else if (!expected) match = 'no-expected';
    else if (!reported) match = 'not-reported';
    else match = normFp(expected) === normFp(reported) ? 'match' : 'mismatch';
    return { what, expected, reported: reported ?? '', match };
  });
}

export interface VolumeRow {
  id: string;
  /** null: not reported / not checked. */
  volume: NodeVolume | null;
  encrypted: Check;
  tpmSlot: Check;
  ready: Check;
}

/** STATE and EPHEMERAL (always, in that order), then any other volume the node reported. */
export function volumeRows(ev: NodeEvidence | null | undefined): VolumeRow[] {
  const vols = wasChecked(ev) && !volumesUnread(ev) ? (ev.volumes ?? []) : [];
  const row = (id: string, v: NodeVolume | null): VolumeRow => {
    if (!v) return { id, volume: null, encrypted: 'unknown', tpmSlot: 'unknown', ready: 'unknown' };
    return {
      id,
      volume: v,
      encrypted: v.encryptionProvider === 'luks2' ? 'yes' : 'no',
      tpmSlot: (v.keyTypes ?? []).includes('tpm') ? 'yes' : 'no',
      ready: v.phase === 'ready' ? 'yes' : 'no',
    };
  };
  const out = ['STATE', 'EPHEMERAL'].map((id) => row(id, vols.find((v) => v.id === id) ?? null));
  for (const v of vols) if (v.id !== 'STATE' && v.id !== 'EPHEMERAL') out.push(row(v.id, v));
  return out;
}

/** "29 Nov 2026, 13:05:12" in the device's zone; '' for a bad time. */
export function dateTime(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 2000) return '';
  return d.toLocaleString([], { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}
