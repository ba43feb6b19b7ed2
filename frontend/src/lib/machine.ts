// What a discovered machine's attributes (talos/discover) mean, in words the
// technician can act on.

import type { MachineView, Site, SiteMachine } from '../api';

export type Tone = 'ok' | 'warn' | 'bad' | '';

export interface Fact {
  tone: Tone;
  label: string;
  /** One sentence on what it means; '' when nothing to add. */
  words: string;
}

export function secureBootFact(m: MachineView): Fact | null {
  switch (m.attrs?.['secureBoot']) {
    case 'on':
      return { tone: 'ok', label: 'SecureBoot on', words: '' };
    case 'off':
      return {
        tone: 'warn',
        label: 'SecureBoot off',
        words: 'This server boots unsigned code. Turn SecureBoot on (SecureBoot step) before installing: disk keys are only sealed when it is on.',
      };
    default:
      return null;
  }
}

export function tpmFact(m: MachineView): Fact | null {
  switch (m.attrs?.['tpm']) {
    case 'present':
      return { tone: 'ok', label: 'TPM present', words: '' };
    case 'absent':
      return {
        tone: 'warn',
        label: 'No TPM',
        words: 'No TPM 2.0 found: the disks cannot be encrypted with a sealed key. Enable the TPM in the firmware setup.',
      };
    default:
      return null;
  }
}

/**
 * The maintenance certificate fingerprint in groups of four, as it is
 * compared by eye with the node's console.
 */
export function groupFingerprint(fp: string | undefined, size = 4): string[] {
  const s = (fp ?? '').replace(/\s+/g, '');
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

/** The disks the node reported (disk0..disk3), with how many more there are. */
export function machineDisks(m: MachineView): { list: string[]; more: number } {
  const a = m.attrs ?? {};
  const list: string[] = [];
  for (let i = 0; i < 4; i++) {
    const d = a[`disk${i}`];
    if (d) list.push(d.trim());
  }
  const total = Number(a['disks'] ?? list.length);
  return { list, more: Number.isFinite(total) ? Math.max(0, total - list.length) : 0 };
}

/** Vendor and product on one line, '' when unknown. */
export function hardwareLine(m: MachineView): string {
  const a = m.attrs ?? {};
  return [a['vendor'], a['product']]
    .map((x) => x?.trim())
    .filter(Boolean)
    .join(' ');
}

/** Firmware as far as known: the DHCP architecture plus whether it booted a UKI. */
export function firmwareLine(m: MachineView): string {
  const parts: string[] = [];
  if (m.arch) parts.push(m.arch);
  const uki = m.attrs?.['uki'];
  if (uki === 'true') parts.push('booted a signed UKI');
  else if (uki === 'false') parts.push('no UKI');
  return parts.join(' · ');
}

const macKey = (mac: string | undefined): string => (mac ?? '').toLowerCase().replace(/[^0-9a-f]/g, '');

/** The site's machine this discovered machine is (by MAC, else SMBIOS UUID). */
export function siteMachineFor(m: MachineView, site: Site | undefined): { index: number; machine: SiteMachine } | null {
  const list = site?.machines ?? [];
  const mac = macKey(m.mac);
  const uuids = [m.uuid, m.attrs?.['uuid']].filter((u): u is string => !!u).map((u) => u.toLowerCase());
  for (const [index, sm] of list.entries()) {
    if (sm.mac && mac && macKey(sm.mac) === mac) return { index, machine: sm };
    if (sm.uuid && uuids.includes(sm.uuid.toLowerCase())) return { index, machine: sm };
  }
  return null;
}

/** Counts for the line above the cards. */
export function discoverSummary(list: readonly MachineView[]): { maintenance: number; attention: number } {
  let maintenance = 0;
  let attention = 0;
  for (const m of list) {
    if (m.stage === 'maintenance') maintenance++;
    if (m.problem || m.attrs?.['secureBoot'] === 'off' || m.attrs?.['tpm'] === 'absent') attention++;
  }
  return { maintenance, attention };
}
