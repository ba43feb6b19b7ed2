import { flushSync, mount, unmount } from 'svelte';
import { writable } from 'svelte/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import App from '../App.svelte';
import type { InstallView, LabStatus, NodeEvidence } from '../api';
import { appContext, createAppState } from '../lib/appstate';
import { parseHash, type Route } from '../lib/router';
import { FP1, fakeApi, installNode, installSteps, installView, machine, PCR_FPR, sampleSite, UKI_FPR } from '../test/fakeapi';
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
const node = (mac: string) => `[data-testid="install-node-${mac}"]`;
const vnode = (mac: string) => `[data-testid="verify-node-${mac}"]`;
const cells = (sel: string) => $$(`${sel} th, ${sel} td`).map((e) => e.textContent?.trim());

const MAC1 = '52:54:00:00:00:01';
const MAC2 = '52:54:00:00:00:02';
const REFUSAL = 'apply config to 10.77.0.20: rpc error: code = FailedPrecondition desc = SecureBoot is not enabled: refusing to install a SecureBoot installer image';

describe('Install page', () => {
  it('site-wide blockers come first, each with a link to the step that fixes it', async () => {
    const f = fakeApi({
      install: installView({
        blockers: ['Set the expected UKI and PCR signing-key fingerprints on the Site step', 'Generate the cluster secrets on the Site step'],
        nodes: [
          installNode(MAC1, { ready: false, blocker: 'Not seen on the network yet', ip: '', serial: '', secureBoot: '', tpm: '', fingerprint: '' }),
          installNode(MAC2, { hostname: 'worker-1', role: 'worker', ready: true }),
        ],
      }),
    });
    await render(f, '#/install');
    expect($('[data-testid=install-status]')?.getAttribute('data-blockers')).toBe('2');
    const items = $$('[data-testid=install-blocker]');
    expect(items.map((b) => b.querySelector('span')?.textContent)).toEqual([
      'Set the expected UKI and PCR signing-key fingerprints on the Site step',
      'Generate the cluster secrets on the Site step',
    ]);
    expect(items.map((b) => b.querySelector('a')?.getAttribute('href'))).toEqual(['#/site', '#/site']);
    // blocked site-wide: nothing can be confirmed or installed, even a ready node
    expect($('[data-testid=node-confirm]')).toBeNull();
    expect($('[data-testid=node-install]')).toBeNull();
    expect($('[data-testid=install-all]')).toBeNull();
    // the undiscovered node says why, and where to go
    expect(text(`${node(MAC1)} [data-testid=node-blocker]`)).toContain('Not seen on the network yet');
    expect($(`${node(MAC1)} [data-testid=node-blocker] a`)?.getAttribute('href')).toBe('#/discover');
    expect(text(`${node(MAC1)} [data-testid=node-state]`)).toBe('Not ready');
    expect(text(`${node(MAC1)} [data-testid=node-ip]`)).toBe('not seen yet');
    expect(text(`${node(MAC1)} [data-testid=node-secureboot]`)).toBe('SecureBoot not known yet');
    expect($(`${node(MAC1)} [data-testid=node-no-fingerprint]`)).not.toBeNull();
  });

  it('a ready machine: its facts, the fingerprint in fours, confirm, then install', async () => {
    const f = fakeApi({ install: installView({ nodes: [installNode(MAC1), installNode(MAC2, { hostname: 'worker-1', role: 'worker', fingerprint: 'AAAABBBBCCCC' })] }) });
    await render(f, '#/install');
    const one = node(MAC1);
    expect(text(`${one} [data-testid=node-hostname]`)).toBe('cp-1');
    expect(text(`${one} [data-testid=node-role]`)).toBe('Control plane');
    expect(text(`${one} [data-testid=node-mac]`)).toBe(MAC1);
    expect(text(`${one} [data-testid=node-serial]`)).toBe('LAB-0001');
    expect(text(`${one} [data-testid=node-ip]`)).toBe('10.77.0.20');
    expect($(`${one} [data-testid=node-secureboot]`)?.getAttribute('data-value')).toBe('on');
    expect($(`${one} [data-testid=node-tpm]`)?.getAttribute('data-value')).toBe('present');
    expect(text(`${one} [data-testid=node-state]`)).toBe('Ready to install');
    const groups = $$(`${one} [data-testid=node-fingerprint] .groups span`).map((e) => e.textContent);
    expect(groups).toEqual(['q2Xk', '7zQ0', 'bW1d', 'N3hT', '5mVc', '8aR9', 'yL2p', 'F6sJ', '4uE0', 'iO7t', 'A1k=']);
    expect(text(`${one} [data-testid=node-fingerprint] .groups`).replace(/ /g, '')).toBe(FP1);
    expect($(`${one} [data-testid=node-steps]`)).toBeNull(); // nothing ran yet

    // Install waits for the comparison with the console.
    expect($(`${one} [data-testid=node-install]`)?.hasAttribute('disabled')).toBe(true);
    expect($('[data-testid=install-all]')?.hasAttribute('disabled')).toBe(true);
    expect($$('.primary').map((e) => e.getAttribute('data-testid'))).toEqual(['install-all']);
    await click(`${one} [data-testid=node-confirm]`);
    expect($(`${one} [data-testid=node-install]`)?.hasAttribute('disabled')).toBe(false);
    expect(text('[data-testid=install-all]')).toBe('Install all confirmed (1)');
    await click(`${one} [data-testid=node-install]`);
    expect(f.api.install.start).toHaveBeenCalledWith({ machines: [{ mac: MAC1, fingerprint: FP1 }] });

    // Running: the fixed steps, the message and Cancel.
    expect($(one)?.getAttribute('data-state')).toBe('running');
    expect($$(`${one} [data-testid=node-steps] li`).map((e) => e.getAttribute('data-step'))).toEqual(['config', 'apply', 'install', 'bootstrap', 'health', 'verify']);
    expect(text(`${one} [data-testid=node-message]`)).toBe('Generating the machine config');
    await click(`${one} [data-testid=node-cancel]`);
    expect(f.api.install.cancel).toHaveBeenCalledWith(MAC1);
    expect(text(`${one} [data-testid=node-state]`)).toBe('Cancelled');
  });

  it('"Install all confirmed" sends every confirmed machine with its fingerprint', async () => {
    const f = fakeApi({ install: installView({ nodes: [installNode(MAC1), installNode(MAC2, { hostname: 'worker-1', fingerprint: 'AAAABBBB' })] }) });
    await render(f, '#/install');
    await click(`${node(MAC1)} [data-testid=node-confirm]`);
    await click(`${node(MAC2)} [data-testid=node-confirm]`);
    expect(text('[data-testid=install-all]')).toBe('Install all confirmed (2)');
    await click('[data-testid=install-all]');
    expect(f.api.install.start).toHaveBeenCalledWith({
      machines: [
        { mac: MAC1, fingerprint: FP1 },
        { mac: MAC2, fingerprint: 'AAAABBBB' },
      ],
    });
  });

  it('a rediscovered node (new fingerprint) must be compared again', async () => {
    const f = fakeApi({ install: installView({ nodes: [installNode(MAC1)] }) });
    await render(f, '#/install');
    await click(`${node(MAC1)} [data-testid=node-confirm]`);
    expect(($(`${node(MAC1)} [data-testid=node-confirm]`) as HTMLInputElement).checked).toBe(true);
    f.emit('install:changed', installView({ nodes: [installNode(MAC1, { fingerprint: 'NEWFINGERPRINT=' })] }));
    await flush();
    expect(($(`${node(MAC1)} [data-testid=node-confirm]`) as HTMLInputElement).checked).toBe(false);
    expect($(`${node(MAC1)} [data-testid=node-install]`)?.hasAttribute('disabled')).toBe(true);
  });

  it('shows progress live: step states, messages and durations', async () => {
    const f = fakeApi({ install: installView({ nodes: [installNode(MAC1)] }) });
    await render(f, '#/install');
    f.emit(
      'install:changed',
      installView({
        nodes: [
          installNode(MAC1, {
            state: 'running',
            step: 'install',
            message: 'Talos is installing to /dev/vda',
            steps: installSteps({ config: 'done', apply: 'done', install: 'running' }, { config: 420, apply: 2_300 }),
          }),
        ],
      }),
    );
    await flush();
    const rows = $$(`${node(MAC1)} [data-testid=node-steps] li`);
    expect(rows.map((r) => r.getAttribute('data-state'))).toEqual(['done', 'done', 'running', 'pending', 'pending', 'pending']);
    expect(rows[0]?.textContent).toContain('Generate config');
    expect(rows[0]?.textContent).toContain('420 ms');
    expect(rows[1]?.textContent).toContain('2.3 s');
    expect(rows[2]?.textContent).toContain('Running');
    expect(text(`${node(MAC1)} [data-testid=node-message]`)).toBe('Talos is installing to /dev/vda');
    expect(text(`${node(MAC1)} [data-testid=node-state]`)).toBe('Installing');
    expect($(`${node(MAC1)} [data-testid=node-install]`)).toBeNull();
  });

  it('a failed install shows the exact error and, for SecureBoot, the way to fix it', async () => {
    const failed = installNode(MAC1, {
      state: 'failed',
      step: 'apply',
      error: REFUSAL,
      steps: installSteps({ config: 'done', apply: 'failed' }, { config: 300 }),
    });
    const f = fakeApi({ install: installView({ nodes: [failed] }) });
    await render(f, '#/install');
    expect(text(`${node(MAC1)} [data-testid=node-error] .exact`)).toBe(REFUSAL);
    expect(text(`${node(MAC1)} [data-testid=node-error] strong`)).toBe('Install failed at “Apply over pinned TLS”');
    expect($(`${node(MAC1)} [data-testid=node-sb-hint] a`)?.getAttribute('href')).toBe('#/secureboot');
    expect($(`${node(MAC1)} [data-step=apply]`)?.getAttribute('data-state')).toBe('failed');
    expect(text(`${node(MAC1)} [data-testid=node-install]`)).toBe('Install again');

    f.emit('install:changed', installView({ nodes: [{ ...failed, error: 'apply config to 10.77.0.20: connection refused' }] }));
    await flush();
    expect(text(`${node(MAC1)} [data-testid=node-error] .exact`)).toBe('apply config to 10.77.0.20: connection refused');
    expect($(`${node(MAC1)} [data-testid=node-sb-hint]`)).toBeNull();
  });

  it('warns before installing a machine with SecureBoot off', async () => {
    const off = installNode(MAC1, { secureBoot: 'off', blocker: 'SecureBoot is off: enroll the keys first' });
    const f = fakeApi({ install: installView({ nodes: [off] }) });
    await render(f, '#/install');
    expect(text(`${node(MAC1)} [data-testid=node-sb-warning]`)).toContain('SecureBoot is off on this server');
    expect($(`${node(MAC1)} [data-testid=node-sb-warning] a`)?.getAttribute('href')).toBe('#/secureboot');
    expect($(`${node(MAC1)} [data-testid=node-secureboot]`)?.classList.contains('warn')).toBe(true);
    expect(text(`${node(MAC1)} [data-testid=node-state]`)).toBe('Ready to install');
    await click(`${node(MAC1)} [data-testid=node-confirm]`);
    await click(`${node(MAC1)} [data-testid=node-install]`);
    expect(f.api.install.start).not.toHaveBeenCalled();
    expect(text('[data-testid=install-sb-confirm]')).toContain('On cp-1 SecureBoot is off');
    await click('[data-testid=install-sb-back]');
    expect($('[data-testid=install-sb-confirm]')).toBeNull();
    expect(f.api.install.start).not.toHaveBeenCalled();
    await click(`${node(MAC1)} [data-testid=node-install]`);
    await click('[data-testid=install-sb-anyway]');
    expect(f.api.install.start).toHaveBeenCalledWith({ machines: [{ mac: MAC1, fingerprint: FP1 }] });
  });

  it('shows a refused request verbatim', async () => {
    const f = fakeApi({ install: installView({ nodes: [installNode(MAC1)] }), installStartError: `install ${MAC1}: the fingerprint changed: rediscover` });
    await render(f, '#/install');
    await click(`${node(MAC1)} [data-testid=node-confirm]`);
    await click('[data-testid=install-all]');
    expect(text('[data-testid=problem]')).toContain(`install ${MAC1}: the fingerprint changed: rediscover`);
  });

  it('says so plainly when the build has no Install service', async () => {
    await render(fakeApi({ install: 'missing' }), '#/install');
    expect(text('[data-testid=install-missing]')).toContain('no Install service');
    expect($('[data-testid=install-status]')).toBeNull();
  });

  it('a site machine listed by UUID only (no MAC yet) is shown, and cannot be installed by MAC', async () => {
    const uuid = '4c4c4544-0042-3510-8051-b4c04f4a4a31';
    const f = fakeApi({
      install: installView({
        nodes: [
          installNode(MAC1, { ready: false, blocker: 'Not seen on the network yet', fingerprint: '' }),
          installNode('', { uuid, hostname: 'worker-1', role: 'worker', ready: true, fingerprint: '' }),
          installNode('', { uuid: '', hostname: 'worker-2', role: 'worker', ready: false }),
        ],
      }),
    });
    await render(f, '#/install');
    expect($$('[data-testid^=install-node-]').map((e) => e.getAttribute('data-testid'))).toEqual([
      `install-node-${MAC1}`,
      `install-node-${uuid}`,
      'install-node-worker-2',
    ]);
    expect(text(`${node(uuid)} [data-testid=node-mac]`)).toBe('not seen yet');
    expect(text(`${node(uuid)} [data-testid=node-uuid]`)).toBe(uuid);
    expect($(`${node(uuid)} [data-testid=node-install]`)).toBeNull();
    unmount(app!);
    app = undefined;
    await render(fakeApi({ install: installView({ nodes: [installNode('', { uuid, state: 'installed' })] }) }), '#/verify');
    expect($$(`${vnode(uuid)} [data-testid=verify-again]`).every((b) => b.hasAttribute('disabled'))).toBe(true);
  });

  it('no machines in the site: points to the Site step', async () => {
    await render(fakeApi(), '#/install');
    expect($('[data-testid=install-empty] a')?.getAttribute('href')).toBe('#/site');
  });
});

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
      { id: 'EPHEMERAL', phase: 'ready', encryptionProvider: 'luks2', keyTypes: ['tpm'] },
    ],
    checkedAt: '2026-11-29T13:10:00Z',
    ...over,
  };
}

const keyedSite = () => ({ ...sampleSite(), secureBoot: { ukiSigningKeyFingerprint: UKI_FPR, pcrSigningKeyFingerprint: PCR_FPR } });

describe('Verify page', () => {
  it('nothing checked yet: grey, never green', async () => {
    const f = fakeApi({ site: keyedSite(), install: installView({ nodes: [installNode(MAC1), installNode(MAC2, { hostname: 'worker-1', state: 'installed' })] }) });
    await render(f, '#/verify');
    expect(text('[data-testid=cluster-bootstrap]')).toContain('Not bootstrapped');
    expect(text('[data-testid=cluster-health]')).toBe('Kubernetes health not confirmed');
    expect(text('[data-testid=cluster-kubeconfig]')).toBe('No kubeconfig yet');
    expect(text('[data-testid=verify-tally]')).toBe('0 of 2 nodes verified');
    expect($(vnode(MAC1))?.getAttribute('data-verdict')).toBe('not-checked');
    expect(text(`${vnode(MAC1)} [data-testid=verify-verdict]`)).toBe('Not checked');
    expect($(`${vnode(MAC1)} [data-testid=verify-verdict]`)?.className).not.toMatch(/\bok\b/);
    expect($$(`${vnode(MAC1)} [data-testid^=check-]`).map((e) => e.getAttribute('data-value'))).toEqual(['unknown', 'unknown', 'unknown']);
    expect($$(`${vnode(MAC1)} [data-testid^=check-]`).map((e) => e.textContent?.trim())).toEqual(['SecureBoot: not checked', 'UKI boot: not checked', 'TPM: not checked']);
    expect($$(`${vnode(MAC1)} .ok`)).toHaveLength(0);
    expect(cells(`${vnode(MAC1)} [data-testid=vol-STATE]`)).toEqual(['STATE', 'not checked']);
    expect($(`${vnode(MAC1)} [data-testid=fp-UKI]`)?.getAttribute('data-match')).toBe('unknown');
    expect(text(`${vnode(MAC1)} [data-testid=verify-checked]`)).toBe('Never checked');
    // not installed: nothing to verify; installed: verify
    expect($(`${vnode(MAC1)} [data-testid=verify-again]`)?.hasAttribute('disabled')).toBe(true);
    expect($(`${vnode(MAC2)} [data-testid=verify-again]`)?.hasAttribute('disabled')).toBe(false);
    await click(`${vnode(MAC2)} [data-testid=verify-again]`);
    expect(f.api.install.verify).toHaveBeenCalledWith(MAC2);
  });

  it('a verified node and a healthy cluster', async () => {
    const v: InstallView = installView({
      bootstrapped: true,
      bootstrapNode: 'cp-1',
      healthy: true,
      kubeconfig: true,
      nodes: [installNode(MAC1, { state: 'verified', steps: installSteps({ config: 'done', apply: 'done', install: 'done', bootstrap: 'done', health: 'done', verify: 'done' }), evidence: evidence() })],
    });
    const f = fakeApi({ site: keyedSite(), install: v });
    await render(f, '#/verify');
    expect(text('[data-testid=cluster-bootstrap]')).toBe('Bootstrapped etcd bootstrapped on cp-1');
    expect(text('[data-testid=cluster-health]')).toBe('Kubernetes healthy');
    expect(text('[data-testid=cluster-kubeconfig]')).toContain('never shown');
    expect(text('[data-testid=verify-tally]')).toBe('1 of 1 node verified');
    expect(text(`${vnode(MAC1)} [data-testid=verify-verdict]`)).toBe('Verified');
    expect($(`${vnode(MAC1)} [data-testid=verify-verdict]`)?.classList.contains('ok')).toBe(true);
    expect($(`${vnode(MAC1)} [data-testid=verify-reasons]`)).toBeNull();
    expect($$(`${vnode(MAC1)} [data-testid^=check-]`).map((e) => e.getAttribute('data-value'))).toEqual(['yes', 'yes', 'yes']);
    expect($$(`${vnode(MAC1)} [data-testid^=fp-]`).map((e) => e.getAttribute('data-match'))).toEqual(['match', 'match']);
    expect(text(`${vnode(MAC1)} [data-testid=fp-PCR] td`)).toBe('0123 4567 89ab cdef 0123 4567 89ab cdef 0123 4567 89ab cdef 0123 4567 89ab cdef');
    expect(cells(`${vnode(MAC1)} [data-testid=vol-STATE]`)).toEqual(['STATE', 'luks2', 'tpm', 'ready']);
    expect(text(`${vnode(MAC1)} [data-testid=verify-checked]`)).toMatch(/^Checked .*2026/);
    expect(text(`${vnode(MAC1)} [data-testid=verify-again]`)).toBe('Verify again');
  });

  it('a node that is not verified: the reasons verbatim and the mismatch highlighted', async () => {
    const other = 'f'.repeat(64);
    const reasons = [
      `PCR signing-key fingerprint mismatch: node reports ${other}, expected ${PCR_FPR}`,
      'EPHEMERAL has no TPM key slot (key slots: [static])',
    ];
    const ev = evidence({
      verified: false,
      reasons,
      pcrSigningKeyFingerprint: other,
      volumes: [
        { id: 'STATE', phase: 'ready', encryptionProvider: 'luks2', keyTypes: ['tpm'] },
        { id: 'EPHEMERAL', phase: 'ready', encryptionProvider: 'luks2', keyTypes: ['static'] },
      ],
    });
    const f = fakeApi({ site: keyedSite(), install: installView({ nodes: [installNode(MAC1, { state: 'not-verified', evidence: ev })] }) });
    await render(f, '#/verify');
    expect($(vnode(MAC1))?.getAttribute('data-verdict')).toBe('not-verified');
    expect(text(`${vnode(MAC1)} [data-testid=verify-verdict]`)).toBe('Not verified');
    expect($$(`${vnode(MAC1)} [data-testid=verify-reasons] li`).map((e) => e.textContent)).toEqual(reasons);
    const pcr = $(`${vnode(MAC1)} [data-testid=fp-PCR]`);
    expect(pcr?.getAttribute('data-match')).toBe('mismatch');
    expect(pcr?.classList.contains('mismatch')).toBe(true);
    expect(pcr?.textContent).toContain('MISMATCH');
    expect($(`${vnode(MAC1)} [data-testid=fp-UKI]`)?.classList.contains('mismatch')).toBe(false);
    expect($(`${vnode(MAC1)} [data-testid=vol-EPHEMERAL] td:nth-of-type(2)`)?.classList.contains('bad')).toBe(true);
    expect(cells(`${vnode(MAC1)} [data-testid=vol-EPHEMERAL]`)).toEqual(['EPHEMERAL', 'luks2', 'static', 'ready']);
    await click(`${vnode(MAC1)} [data-testid=verify-again]`);
    expect(f.api.install.verify).toHaveBeenCalledWith(MAC1);
  });

  it('says so plainly when the build has no Install service', async () => {
    await render(fakeApi({ install: 'missing' }), '#/verify');
    expect(text('[data-testid=verify-missing]')).toContain('no Install service');
  });
});

describe('Site page: SecureBoot image keys', () => {
  const labWithKeys: LabStatus = {
    running: true,
    starting: false,
    machines: [],
    error: '',
    prereqsMissing: [],
    imageKeys: { ukiSigningKeyFingerprint: UKI_FPR, pcrSigningKeyFingerprint: PCR_FPR },
  };

  it('fills in the virtual lab image keys and saves them', async () => {
    const f = fakeApi({ site: sampleSite(), lab: labWithKeys });
    await render(f, '#/site');
    expect(($('[data-testid=site-uki-fpr]') as HTMLInputElement).value).toBe('');
    await click('[data-testid=site-lab-keys]');
    expect(($('[data-testid=site-uki-fpr]') as HTMLInputElement).value).toBe(UKI_FPR);
    expect(($('[data-testid=site-pcr-fpr]') as HTMLInputElement).value).toBe(PCR_FPR);
    expect($('[data-testid=site-lab-keys]')?.hasAttribute('disabled')).toBe(true);
    await click('[data-testid=site-save]');
    expect(f.api.site.save.mock.calls.at(-1)?.[0].secureBoot).toEqual({ ukiSigningKeyFingerprint: UKI_FPR, pcrSigningKeyFingerprint: PCR_FPR });
  });

  it('offers no lab keys without a lab that has them; empty keys are not sent', async () => {
    const f = fakeApi({ site: sampleSite() });
    await render(f, '#/site');
    expect($('[data-testid=site-lab-keys]')).toBeNull();
    await type('[data-testid=site-name]', 'changed');
    await click('[data-testid=site-save]');
    expect(f.api.site.save.mock.calls.at(-1)?.[0]).not.toHaveProperty('secureBoot');
  });

  it('shows problems at their field paths', async () => {
    const f = fakeApi({
      site: { ...sampleSite(), secureBoot: { ukiSigningKeyFingerprint: 'ABC' } },
      siteProblems: (s) =>
        s.secureBoot?.ukiSigningKeyFingerprint === 'ABC'
          ? [{ path: 'secureBoot.ukiSigningKeyFingerprint', message: 'must be 64 lower-case hex characters' }]
          : [],
    });
    await render(f, '#/site');
    expect($$('[data-field="secureBoot.ukiSigningKeyFingerprint"] [data-testid=field-problem]').map((e) => e.textContent?.trim())).toEqual([
      'must be 64 lower-case hex characters',
    ]);
    expect($$('[data-field="secureBoot.pcrSigningKeyFingerprint"] [data-testid=field-problem]')).toHaveLength(0);
    expect(text('[data-testid=site-problems]')).toContain('UKI signing-key fingerprint');
    await type('[data-testid=site-uki-fpr]', UKI_FPR);
    await click('[data-testid=site-save]');
    expect($$('[data-testid=field-problem]')).toHaveLength(0);
  });
});

describe('Discover page: Talos events and kernel messages', () => {
  it('keeps kernel messages to the last few, expandable, and shows the install stage', async () => {
    const kmsg = Array.from({ length: 8 }, (_, i) => ({ time: '2026-11-29T13:01:00Z', kind: 'talos.kmsg', detail: `kmsg line ${i}`, attrs: { priority: '6' } }));
    const f = fakeApi({
      status: { running: true, iface: 'lab' },
      machines: [
        machine(MAC1, {
          stage: 'installing',
          timeline: [
            { time: '2026-11-29T13:00:00Z', kind: 'dhcp.ack', ip: '10.77.0.20' },
            ...kmsg,
            { time: '2026-11-29T13:02:00Z', kind: 'talos.event', detail: 'stage: installing', attrs: { type: 'MachineStatusEvent', stage: 'installing', ready: 'false' } },
            { time: '2026-11-29T13:02:01Z', kind: 'talos.event', detail: 'config validation error: bad disk', error: 'bad disk', attrs: { type: 'ConfigValidationErrorEvent' } },
          ],
        }),
      ],
    });
    await render(f, '#/discover');
    const card = `[data-testid="machine-${MAC1}"]`;
    expect($$(`${card} .chips .done`).map((e) => e.textContent?.trim())).toEqual(['DHCP', 'TFTP', 'HTTP', 'Talos maintenance']);
    expect(text(`${card} [data-testid=machine-after-stage]`)).toBe('Installing');
    expect($(`${card} [data-testid=machine-after-stage]`)?.classList.contains('now')).toBe(true);
    const rows = () => $$(`${card} .timeline li`);
    expect(rows().filter((r) => r.getAttribute('data-kind') === 'talos.kmsg').map((r) => r.querySelector('.detail')?.textContent)).toEqual([
      'kmsg line 5',
      'kmsg line 6',
      'kmsg line 7',
    ]);
    expect(rows().filter((r) => r.classList.contains('kmsg'))).toHaveLength(3);
    expect(text(`${card} .timeline`)).toContain('Talos stage');
    expect(rows().at(-1)?.classList.contains('bad')).toBe(true);
    expect(text(`${card} [data-testid=timeline-kmsg-toggle]`)).toBe('Show 5 earlier kernel messages');
    await click(`${card} [data-testid=timeline-kmsg-toggle]`);
    expect(rows().filter((r) => r.classList.contains('kmsg'))).toHaveLength(8);
    expect(text(`${card} [data-testid=timeline-kmsg-toggle]`)).toBe('Show fewer kernel messages');
  });

  it('a running node: every chip done', async () => {
    const f = fakeApi({ status: { running: true, iface: 'lab' }, machines: [machine(MAC1, { stage: 'running' })] });
    await render(f, '#/discover');
    expect($$(`[data-testid="machine-${MAC1}"] .chips .done`).map((e) => e.textContent?.trim())).toEqual([
      'DHCP',
      'TFTP',
      'HTTP',
      'Talos maintenance',
      'Running Talos',
    ]);
  });
});
