import { flushSync, mount, unmount } from 'svelte';
import { writable } from 'svelte/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import App from '../App.svelte';
import { appContext, createAppState } from '../lib/appstate';
import { parseHash, type Route } from '../lib/router';
import { fakeApi } from '../test/fakeapi';
import { FAKE_SHA, fakeHandoffApi, fakeReportApi, handoffViewOf, sampleReport } from '../test/fakehandoff';
import { settle } from '../test/fakes';

let target: HTMLElement;
let app: ReturnType<typeof mount> | undefined;

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
  // jsdom has no object URLs; the download helper needs them.
  URL.createObjectURL = vi.fn(() => 'blob:x');
  URL.revokeObjectURL = vi.fn();
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
async function render(f: ReturnType<typeof fakeApi>, hash: string) {
  const route = writable<Route>(parseHash(hash));
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
async function type(sel: string, value: string): Promise<void> {
  const el = $(sel) as HTMLInputElement | null;
  if (!el) throw new Error(`no ${sel}`);
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  await flush();
}
const btn = (sel: string) => $(sel) as HTMLButtonElement;

const AGE = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

describe('Handoff page', () => {
  it('writes the bundle for a key, shows its SHA-256, and wipes only after the copy is confirmed', async () => {
    const f = fakeApi();
    await render(f, '#/handoff');
    expect($('[data-testid=not-yet]')).toBeNull();
    expect(text('[data-testid=handoff-status]')).toContain('Secrets on this device');
    expect(btn('[data-testid=handoff-export]').disabled).toBe(true);
    expect(btn('[data-testid=handoff-wipe]').disabled).toBe(true);
    expect(text('[data-testid=handoff-wipe-wait]')).toContain('Write the bundle first');

    await type('[data-testid=handoff-keys]', 'AGE-SECRET-KEY-1ABC');
    expect(text('[data-testid=handoff-key-problem]')).toContain('private key');
    expect(btn('[data-testid=handoff-export]').disabled).toBe(true);

    await type('[data-testid=handoff-keys]', AGE);
    expect($$('[data-testid=handoff-key-problem]')).toHaveLength(0);
    await click('[data-testid=handoff-export]');
    expect(f.api.handoff.export).toHaveBeenCalledWith({ recipients: [AGE] });
    expect(URL.createObjectURL).toHaveBeenCalled();
    expect($('[data-testid=handoff-sha]')?.getAttribute('data-sha')).toBe(FAKE_SHA);
    expect(text('[data-testid=handoff-exported]')).toContain(AGE);

    expect(btn('[data-testid=handoff-wipe]').disabled).toBe(true);
    await click('[data-testid=handoff-copied]');
    expect(btn('[data-testid=handoff-wipe]').disabled).toBe(false);
    await click('[data-testid=handoff-wipe]');
    expect(f.api.handoff.wipe).toHaveBeenCalledWith({ sha256: FAKE_SHA, copied: true });
    expect($('[data-testid=handoff-status]')?.getAttribute('data-wiped')).toBe('true');
    expect(text('[data-testid=handoff-status]')).toContain('Secrets wiped');
    expect($('[data-testid=handoff-export]')).toBeNull();
    expect($('[data-testid=handoff-wipe]')).toBeNull();
  });

  it('a passphrase must be typed twice', async () => {
    const f = fakeApi();
    await render(f, '#/handoff');
    await click('[data-testid=handoff-mode-passphrase]');
    await type('[data-testid=handoff-pass]', 'fleet manager phrase 7');
    await type('[data-testid=handoff-pass2]', 'fleet manager phrase 8');
    expect(btn('[data-testid=handoff-export]').disabled).toBe(true);
    await type('[data-testid=handoff-pass2]', 'fleet manager phrase 7');
    await click('[data-testid=handoff-export]');
    expect(f.api.handoff.export).toHaveBeenCalledWith({ recipients: [], passphrase: 'fleet manager phrase 7' });
    expect(($('[data-testid=handoff-pass]') as HTMLInputElement).value).toBe('');
  });

  it('shows why nothing can be written, and the Omni join', async () => {
    const f = fakeApi();
    f.api.handoff = fakeHandoffApi(
      handoffViewOf({ secrets: false, blockers: ['Unlock the vault on the Site step: it holds the cluster secrets'], target: 'omni', omni: { apiUrl: 'https://omni.example:8090', joinToken: true } }),
    );
    await render(f, '#/handoff');
    expect(text('[data-testid=handoff-blocker]')).toContain('Unlock the vault');
    expect($('[data-testid=handoff-blocker] a')?.getAttribute('href')).toBe('#/site');
    expect(text('[data-testid=handoff-omni]')).toContain('https://omni.example:8090');
    expect(btn('[data-testid=handoff-export]').disabled).toBe(true);
  });
});

describe('Report page', () => {
  it('shows the tally, the audit head and every machine, and saves both files', async () => {
    const f = fakeApi();
    await render(f, '#/report');
    expect($('[data-testid=not-yet]')).toBeNull();
    expect(text('[data-testid=report-tally]')).toContain('1 of 2 machines verified, 1 not installed');
    expect($('[data-testid=report-audit]')?.getAttribute('data-verified')).toBe('true');
    expect(text('[data-testid=report-head]').replace(/ /g, '')).toBe('e5'.repeat(32));
    expect($$('[data-testid=report-machine]').map((r) => r.getAttribute('data-state'))).toEqual(['verified', 'not-installed']);
    await click('[data-testid=report-save-html]');
    expect(f.api.report.html).toHaveBeenCalled();
    await click('[data-testid=report-save-json]');
    expect(f.api.report.json).toHaveBeenCalled();
  });

  it('says loudly when the audit trail is broken', async () => {
    const f = fakeApi();
    const r = sampleReport();
    f.api.report = fakeReportApi({ ...r, audit: { ...r.audit, verified: false, problem: 'the audit trail was altered: event 2 was edited' } });
    await render(f, '#/report');
    expect(text('[data-testid=report-audit]')).toContain('Audit trail not intact the audit trail was altered: event 2 was edited');
  });

  it('without a site, says so', async () => {
    const f = fakeApi();
    f.api.report = fakeReportApi(new Error('no site yet: fill in the Site step first'));
    await render(f, '#/report');
    expect(text('[data-testid=problem]')).toContain('no site yet');
  });
});
