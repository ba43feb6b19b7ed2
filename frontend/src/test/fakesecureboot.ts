// Fake of the SecureBoot service (Go: app/secureboot.go) for the vitest
// suites; fakeapi.ts plugs it in.
import { vi } from 'vitest';
import type { EnrollMark, EnrollmentRequest, Playbook, SecureBootStatus } from '../api';

export const FAKE_FPR = {
  pk: '1a'.repeat(32),
  kek: '2b'.repeat(32),
  db: '3c'.repeat(32),
  ukiSigningKey: '3c'.repeat(32),
  pcrSigningKey: '4d'.repeat(32),
};

export const DROP_MS_WARNING = 'Without Microsoft\'s UEFI CA in db, the firmware refuses Microsoft-signed option ROMs.';

export function secureBootStatusOf(over: Partial<SecureBootStatus> = {}): SecureBootStatus {
  return { vaultUnlocked: true, hasKeys: false, siteExpects: false, dropMicrosoftWarning: DROP_MS_WARNING, ...over };
}

export const FAKE_PLAYBOOKS: Playbook[] = [
  { vendor: 'Dell', match: ['dell'], enter: 'F2 at boot', steps: ['Boot Mode = UEFI.', 'Secure Boot Policy = Custom.', 'Delete the PK: the system is now in setup mode.'] },
  { vendor: 'HPE', match: ['hpe'], enter: 'F9 at boot', steps: ['Boot Mode = UEFI.', 'Secure Boot Enforcement = Enabled.', 'Delete all keys: setup mode.'], notes: 'Do not reset to platform defaults.' },
  { vendor: 'Other', match: null, enter: 'the setup key', steps: ['UEFI boot.', 'Custom mode.', 'Reset to Setup Mode.'] },
];

export function fakeSecureBootApi(start: SecureBootStatus = secureBootStatusOf()) {
  let v: SecureBootStatus = structuredClone(start);
  const marks = new Set<string>();
  return {
    status: vi.fn(async () => structuredClone(v)),
    generateKeys: vi.fn(async () => {
      if (!v.vaultUnlocked) throw new Error('generate secureboot keys: the vault is locked or not created');
      if (v.hasKeys) throw new Error('generate secureboot keys: the site already has SecureBoot keys');
      v = { ...v, hasKeys: true, site: 'St. Mary lab 2', owner: '0f2e4c6a-1b3d-4e5f-8a9b-0c1d2e3f4a5b', fingerprints: { ...FAKE_FPR } };
      return structuredClone(v);
    }),
    buildEnrollmentImage: vi.fn(async (req: EnrollmentRequest) => {
      if (!v.hasKeys) throw new Error("build enrollment image: generate the site's keys first");
      v = {
        ...v,
        image: {
          iso: '/var/lib/onramp/assets/secureboot/enroll.iso',
          url: '/assets/secureboot/enroll.iso',
          esp: '/var/lib/onramp/assets/secureboot/enroll-esp.img',
          sha256: '5e'.repeat(32),
          size: 4_620_288,
          microsoftKept: !req.dropMicrosoft,
          builtAt: '2026-11-29T15:00:00Z',
        },
      };
      return structuredClone(v);
    }),
    expectForSite: vi.fn(async () => {
      if (!v.hasKeys) throw new Error("expect site fingerprints: generate the site's keys first");
      v = { ...v, siteExpects: true };
      return structuredClone(v);
    }),
    playbooks: vi.fn(async () => structuredClone(FAKE_PLAYBOOKS)),
    enrollMarks: vi.fn(async (): Promise<EnrollMark[]> => [...marks].map((mac) => ({ mac, enroll: true, url: '/assets/secureboot/enroll.iso' }))),
    markEnroll: vi.fn(async (mac: string): Promise<EnrollMark> => {
      if (!v.image) throw new Error('mark machine for enrollment: build the enrollment image first (SecureBoot step)');
      marks.add(mac);
      return { mac, enroll: true, url: '/assets/secureboot/enroll.iso', note: 'at its next network boot' };
    }),
    unmarkEnroll: vi.fn(async (mac: string): Promise<EnrollMark> => {
      marks.delete(mac);
      return { mac, enroll: false };
    }),
  };
}
