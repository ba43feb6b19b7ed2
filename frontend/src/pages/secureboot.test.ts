import { flushSync, mount, unmount } from 'svelte';
import { writable } from 'svelte/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import App from '../App.svelte';
import { appContext, createAppState } from '../lib/appstate';
import { parseHash, type Route } from '../lib/router';
import { fakeApi, machine } from '../test/fakeapi';
import { DROP_MS_WARNING, fakeSecureBootApi, secureBootStatusOf } from '../test/fakesecureboot';
import { settle } from '../test/fakes';

let target: HTMLElement;
let app: ReturnType<typeof mount> | undefined;

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});
afterEach(() => {
  if (app) unmount(app);
  app = undefined;
  target.remove();
  vi.restoreAllMocks();
});

async function flush(): Promise<void> {
  await settle(20);
  flushSync();
}
async function render(f: ReturnType<typeof fakeApi>) {
  const route = writable<Route>(parseHash('#/secureboot'));
  app = mount(App, { target, props: { route }, context: appContext(createAppState(f.api)) });
  await flush();
}
const $ = (sel: string) => target.querySelector(sel);
const $$ = (sel: string) => [...target.querySelectorAll(sel)];
const text = (sel: string) => $(sel)?.textContent?.replace(/\s+/g, ' ').trim() ?? '';
async function click(sel: string): Promise<void> {
  const el = $(sel) as HTMLElement | null;
  if (!el) throw new Error(`no ${sel}`);
  el.click();
  await flush();
}

describe('SecureBoot page', () => {
  it('with the vault locked: says where to unlock it and offers no keys', async () => {
    const f = fakeApi();
    f.api.secureboot = fakeSecureBootApi(secureBootStatusOf({ vaultUnlocked: false }));
    await render(f);
    expect($('[data-testid=secureboot-status]')?.getAttribute('data-vault')).toBe('false');
    expect(text('[data-testid=secureboot-status]')).toContain('vault is locked');
    expect($('[data-testid=secureboot-status] a')?.getAttribute('href')).toBe('#/site');
    expect($('[data-testid=secureboot-generate]')).toBeNull();
    expect($('[data-testid=secureboot-fingerprints]')).toBeNull();
    // The playbooks are there anyway: setup mode does not need the keys.
    expect($('[data-testid=secureboot-playbook]')).not.toBeNull();
  });

  it('generates keys, shows their fingerprints, builds the image, warns before dropping Microsoft', async () => {
    const f = fakeApi();
    await render(f);
    expect($$('.primary').map((e) => e.getAttribute('data-testid'))).toEqual(['secureboot-generate']);
    await click('[data-testid=secureboot-generate]');
    expect(f.api.secureboot.generateKeys).toHaveBeenCalledTimes(1);
    expect($('[data-testid=secureboot-status]')?.getAttribute('data-keys')).toBe('true');
    expect(text('[data-testid=secureboot-fpr-uki]')).toBe(('3c3c '.repeat(16)).trim());
    expect(text('[data-testid=secureboot-fpr-pcr]')).toBe(('4d4d '.repeat(16)).trim());
    // Keys made: the one primary action is the image.
    expect($$('.primary').map((e) => e.getAttribute('data-testid'))).toEqual(['secureboot-build']);

    expect($('[data-testid=secureboot-drop-ms-warning]')).toBeNull();
    await click('[data-testid=secureboot-drop-ms]');
    expect(text('[data-testid=secureboot-drop-ms-warning]')).toContain(DROP_MS_WARNING);
    await click('[data-testid=secureboot-drop-ms]');
    await click('[data-testid=secureboot-build]');
    expect(f.api.secureboot.buildEnrollmentImage).toHaveBeenCalledWith({ dropMicrosoft: false });
    expect($('[data-testid=secureboot-image-info]')?.getAttribute('data-microsoft')).toBe('true');
    expect(text('[data-testid=secureboot-image-info]')).toContain('/assets/secureboot/enroll.iso');
    expect(text('[data-testid=secureboot-build]')).toBe('Build again');

    expect($('[data-testid=secureboot-site-expects]')?.getAttribute('data-expects')).toBe('false');
    await click('[data-testid=secureboot-expect]');
    expect(f.api.secureboot.expectForSite).toHaveBeenCalledTimes(1);
    expect($('[data-testid=secureboot-site-expects]')?.getAttribute('data-expects')).toBe('true');
    expect($('[data-testid=secureboot-expect]')).toBeNull();
  });

  it('shows a vendor playbook, Dell first', async () => {
    const f = fakeApi();
    await render(f);
    expect(text('[data-testid=secureboot-steps]')).toContain('Secure Boot Policy = Custom');
    await click('[data-testid=secureboot-vendor-HPE]');
    expect(text('[data-testid=secureboot-steps]')).toContain('Secure Boot Enforcement');
    expect(text('[data-testid=secureboot-playbook]')).toContain('Do not reset to platform defaults');
  });

  it('reports a failed action without losing the page', async () => {
    const f = fakeApi();
    f.api.secureboot = fakeSecureBootApi(secureBootStatusOf({ hasKeys: true, fingerprints: { pk: 'a', kek: 'b', db: 'c', ukiSigningKey: 'c', pcrSigningKey: 'd' } }));
    f.api.secureboot.buildEnrollmentImage = vi.fn(() => Promise.reject(new Error('build enrollment image: download systemd-boot-efi: offline')));
    await render(f);
    await click('[data-testid=secureboot-build]');
    expect(text('[data-testid=problem]')).toContain('offline');
    expect($('[data-testid=secureboot-fingerprints]')).not.toBeNull();
  });

  it('lists discovered machines with SecureBoot off and marks one for enrollment once the image exists', async () => {
    const off = machine('52:54:00:77:00:11', { stage: 'maintenance', attrs: { secureBoot: 'off', serial: 'LAB-0001' } });
    const on = machine('52:54:00:77:00:13', { stage: 'maintenance', attrs: { secureBoot: 'on', serial: 'LAB-0003' } });
    const f = fakeApi({ machines: [off, on] });
    f.api.secureboot = fakeSecureBootApi(secureBootStatusOf({ hasKeys: true, fingerprints: { pk: '1a'.repeat(32), kek: '2b'.repeat(32), db: '3c'.repeat(32), ukiSigningKey: '3c'.repeat(32), pcrSigningKey: '4d'.repeat(32) } }));
    await render(f);
    const rows = $$('[data-testid=enroll-machine]');
    expect(rows.map((r) => r.getAttribute('data-mac'))).toEqual(['52:54:00:77:00:11']);
    // No image yet: the button is off and says why.
    expect(($('[data-testid=enroll-toggle]') as HTMLButtonElement).disabled).toBe(true);
    await click('[data-testid=secureboot-build]');
    expect(($('[data-testid=enroll-toggle]') as HTMLButtonElement).disabled).toBe(false);
    await click('[data-testid=enroll-toggle]');
    expect(f.api.secureboot.markEnroll).toHaveBeenCalledWith('52:54:00:77:00:11');
    expect($('[data-testid=enroll-machine]')?.getAttribute('data-marked')).toBe('true');
    expect(text('[data-testid=enroll-note]')).toContain('next network boot');
    await click('[data-testid=enroll-toggle]');
    expect(f.api.secureboot.unmarkEnroll).toHaveBeenCalledWith('52:54:00:77:00:11');
    expect($('[data-testid=enroll-machine]')?.getAttribute('data-marked')).toBe('false');
  });

  it('shows a mark the server took back when the machine came back with SecureBoot on', async () => {
    const off = machine('52:54:00:77:00:11', { stage: 'maintenance', attrs: { secureBoot: 'off', serial: 'LAB-0001' } });
    const f = fakeApi({ machines: [off] });
    f.api.secureboot = fakeSecureBootApi(secureBootStatusOf({ hasKeys: true, fingerprints: { pk: '1a'.repeat(32), kek: '2b'.repeat(32), db: '3c'.repeat(32), ukiSigningKey: '3c'.repeat(32), pcrSigningKey: '4d'.repeat(32) } }));
    await render(f);
    await click('[data-testid=secureboot-build]');
    await click('[data-testid=enroll-toggle]');
    expect($('[data-testid=enroll-machine]')?.getAttribute('data-marked')).toBe('true');
    // The server takes the mark back (the fake forgets it) and says so.
    await f.api.secureboot.unmarkEnroll('52:54:00:77:00:11');
    const calls = (f.api.secureboot.enrollMarks as ReturnType<typeof vi.fn>).mock.calls.length;
    f.emit('secureboot:marks', { mac: '52:54:00:77:00:11', enroll: false, note: 'boots as planned' });
    await flush();
    expect((f.api.secureboot.enrollMarks as ReturnType<typeof vi.fn>).mock.calls.length).toBeGreaterThan(calls);
    expect($('[data-testid=enroll-machine]')?.getAttribute('data-marked')).toBe('false');
    expect(text('[data-testid=enroll-note]')).toContain('reports SecureBoot on');
  });
});
