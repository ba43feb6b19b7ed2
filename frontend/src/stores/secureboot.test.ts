import { get } from 'svelte/store';
import { describe, expect, it, vi } from 'vitest';
import { fakeApi } from '../test/fakeapi';
import { FAKE_FPR, FAKE_PLAYBOOKS, fakeSecureBootApi, secureBootStatusOf } from '../test/fakesecureboot';
import { settle } from '../test/fakes';
import { createSecureBootStore, playbookFor } from './secureboot';

describe('secureboot store', () => {
  it('picks the playbook by SMBIOS manufacturer, generic otherwise', () => {
    expect(playbookFor(FAKE_PLAYBOOKS, 'Dell Inc.')?.vendor).toBe('Dell');
    expect(playbookFor(FAKE_PLAYBOOKS, 'HPE')?.vendor).toBe('HPE');
    expect(playbookFor(FAKE_PLAYBOOKS, 'QEMU')?.vendor).toBe('Other');
    expect(playbookFor([], 'Dell')).toBeUndefined();
  });

  it('generates keys, builds the image, and follows vault and key events', async () => {
    const f = fakeApi();
    const s = createSecureBootStore(f.api);
    await s.load();
    expect(get(s)).toMatchObject({ available: true, status: { vaultUnlocked: true, hasKeys: false } });
    expect(get(s).playbooks.map((p) => p.vendor)).toEqual(['Dell', 'HPE', 'Other']);
    expect(await s.buildImage(false)).toBe(false);
    expect(get(s).actionError).toContain('generate the site');
    expect(await s.generateKeys()).toBe(true);
    expect(get(s).status?.fingerprints).toEqual(FAKE_FPR);
    expect(get(s).actionError).toBeNull();
    expect(await s.buildImage(true)).toBe(true);
    expect(f.api.secureboot.buildEnrollmentImage).toHaveBeenCalledWith({ dropMicrosoft: true });
    expect(get(s).status?.image?.microsoftKept).toBe(false);

    f.emit('secureboot:changed', secureBootStatusOf({ vaultUnlocked: false }));
    expect(get(s).status?.vaultUnlocked).toBe(false);
    f.emit('vault:changed', {});
    await settle();
    expect(f.api.secureboot.status).toHaveBeenCalledTimes(2);
    s.dispose();
    f.emit('vault:changed', {});
    await settle();
    expect(f.api.secureboot.status).toHaveBeenCalledTimes(2);
  });

  it('says when the build has no SecureBoot service, and keeps other errors', async () => {
    const f = fakeApi();
    f.api.secureboot = { ...fakeSecureBootApi(), status: vi.fn(() => Promise.reject(new Error('call SecureBoot.Status: no such method'))) };
    const s = createSecureBootStore(f.api);
    await s.load();
    expect(get(s)).toMatchObject({ available: false, error: null });
    f.api.secureboot.status = vi.fn(() => Promise.reject(new Error('cannot reach Onramp')));
    const s2 = createSecureBootStore(f.api);
    await s2.load();
    expect(get(s2)).toMatchObject({ available: null, error: 'cannot reach Onramp' });
  });
});
