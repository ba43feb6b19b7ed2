import { flushSync, mount, unmount } from 'svelte';
import { writable } from 'svelte/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import App from '../App.svelte';
import { appContext, createAppState } from '../lib/appstate';
import { parseHash, type Route } from '../lib/router';
import { fakeApi, machine, nic, PCR11_TEXT, sampleSite, simpleProblems } from '../test/fakeapi';
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
  const el = $(sel) as HTMLButtonElement | null;
  if (!el) throw new Error(`no ${sel}`);
  el.click();
  await flush();
}
async function type(sel: string, value: string): Promise<void> {
  const el = $(sel) as HTMLInputElement | HTMLTextAreaElement | null;
  if (!el) throw new Error(`no ${sel}`);
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  await flush();
}
const fieldProblems = (path: string) => $$(`[data-field="${path}"] [data-testid=field-problem]`).map((e) => e.textContent?.trim());

describe('Site page', () => {
  it('a first visit: fill in the basics and save', async () => {
    const f = fakeApi({ siteProblems: simpleProblems });
    await render(f, '#/site');
    expect(text('[data-testid=site-status]')).toContain('Not set up');
    expect($('[data-testid=site-save]')?.classList.contains('primary')).toBe(true);
    expect($$('.primary')).toHaveLength(1);
    expect($('[data-testid=site-secrets]')).toBeNull(); // nothing to generate for yet

    await type('[data-testid=site-cluster]', 'stmary-lab2');
    await type('[data-testid=site-endpoint]', 'https://10.77.0.10:6443');
    expect(text('[data-testid=site-savebar]')).toContain('Unsaved changes');
    await click('[data-testid=site-save]');
    expect(f.api.site.save).toHaveBeenCalledTimes(1);
    expect(f.api.site.save.mock.calls[0]?.[0]).toMatchObject({ cluster: 'stmary-lab2', endpoint: 'https://10.77.0.10:6443', machines: [] });
    expect($('[data-testid=site-status]')?.getAttribute('data-ready')).toBe('true');
    expect(text('[data-testid=site-savebar]')).toContain('All changes saved');
    // Ready and saved: the one primary action is now the secrets.
    expect($$('.primary').map((e) => e.getAttribute('data-testid'))).toEqual(['site-generate']);
  });

  it('imports a site file, then generates the secrets without showing them', async () => {
    const f = fakeApi({ siteProblems: simpleProblems, parseYaml: () => sampleSite() });
    await render(f, '#/site');
    await click('[data-testid=site-import-open]');
    expect($('[data-testid=site-import]')?.hasAttribute('disabled')).toBe(true);
    await type('[data-testid=site-yaml]', 'cluster: stmary-lab2\n');
    await click('[data-testid=site-import]');
    expect(f.api.site.import).toHaveBeenCalledWith('cluster: stmary-lab2\n');
    expect($('[data-testid=site-io]')).toBeNull();
    expect(text('[data-testid=site-status]')).toContain('Ready');
    expect($('[data-testid=site-status]')?.getAttribute('data-problems')).toBe('0');
    expect(($('[data-testid=site-cluster]') as HTMLInputElement).value).toBe('stmary-lab2');
    expect($$('[data-testid^=machine-row-]')).toHaveLength(2);
    expect(text('[data-testid=machine-row-0]')).toContain('cp-1');
    expect(text('[data-testid=machine-row-0]')).toContain('Asset SM-000123');
    expect(text('[data-testid=machine-row-0]')).toContain('10.77.0.11/24 via 10.77.0.1');
    expect(text('[data-testid=machine-row-1]')).toContain('WWID naa.5000c500a1b2c3d4');

    await click('[data-testid=site-generate]');
    expect(f.api.site.generateSecrets).toHaveBeenCalled();
    expect($('[data-testid=site-secrets]')?.getAttribute('data-secrets')).toBe('true');
    expect(text('[data-testid=secrets-exist]')).toContain('never shown');
    expect($('[data-testid=site-generate]')).toBeNull();
  });

  it('a bad import says why next to the text', async () => {
    const f = fakeApi();
    await render(f, '#/site');
    await click('[data-testid=site-import-open]');
    await type('[data-testid=site-yaml]', 'cluster: [');
    await click('[data-testid=site-import]');
    expect(text('[data-testid=import-error]')).toContain('did not find expected key');
    expect($('[data-testid=site-io]')).not.toBeNull();
  });

  it('shows each problem next to its field and in the summary; fixing clears it', async () => {
    const broken = sampleSite();
    broken.endpoint = 'http://10.77.0.10';
    broken.machines![1]!.hostname = '';
    const f = fakeApi({ site: broken, siteProblems: simpleProblems });
    await render(f, '#/site');
    expect(text('[data-testid=site-problem-count]')).toBe('2 problems');
    expect(fieldProblems('endpoint')).toEqual(['"http://10.77.0.10" must look like https://host:6443']);
    expect($('[data-field="endpoint"] input')?.getAttribute('aria-invalid')).toBe('true');
    expect($('[data-field="cluster"] input')?.getAttribute('aria-invalid')).toBe('false');
    const summary = $$('[data-testid=site-problems] li').map((li) => li.textContent?.replace(/\s+/g, ' ').trim());
    expect(summary).toEqual(['API endpoint "http://10.77.0.10" must look like https://host:6443', 'Machine 2 (4c4c4544-0042-3510-8051-b4c04f4a4a31) · Hostname is required']);
    // the machine row says so while closed …
    expect(text('[data-testid=machine-row-1]')).toContain('1 problem');
    expect(text('[data-testid=machine-row-1] .mproblems')).toBe('Hostname: is required');
    // … and the summary opens it at the field.
    ($$('[data-testid=site-problems] button')[1] as HTMLButtonElement).click();
    await flush();
    expect($('[data-testid=machine-editor-1]')).not.toBeNull();
    expect(fieldProblems('machines[1].hostname')).toEqual(['is required']);

    await type('[data-testid=m1-hostname]', 'worker-1');
    await type('[data-testid=site-endpoint]', 'https://10.77.0.10:6443');
    await click('[data-testid=site-save]');
    expect(f.api.site.save.mock.calls.at(-1)?.[0]).toMatchObject({ endpoint: 'https://10.77.0.10:6443' });
    expect($('[data-testid=site-problems]')).toBeNull();
    expect(fieldProblems('endpoint')).toEqual([]);
    expect(text('[data-testid=site-status]')).toContain('Ready');
  });

  it('a problem in a disk selector field lands on that field; the Go path is kept', async () => {
    const s = sampleSite();
    s.machines![0]!.installDisk = { minSize: 'lots' };
    const f = fakeApi({ site: s, siteProblems: simpleProblems });
    await render(f, '#/site');
    await click('[data-testid=machine-edit-0]');
    expect(fieldProblems('machines[0].installDisk.minSize')).toEqual(['"lots" is not a size']);
    expect($('[data-field="machines[0].installDisk.minSize"] [data-testid=field-problem]')?.getAttribute('data-path')).toBe(
      'machines[0].installDisk.minSize',
    );
  });

  it('a problem inside "More settings" opens it at the field; one with no field stays in the summary', async () => {
    const s = sampleSite();
    s.network.nameservers = ['10.77.0.1', 'dns.example'];
    const f = fakeApi({
      site: s,
      siteProblems: () => [
        { path: 'network.nameservers[1]', message: '"dns.example" is not an IP address' },
        { path: 'registryMirrors[0].endpoints[0]', message: '"ftp://x" is not an http(s) URL' },
      ],
    });
    await render(f, '#/site');
    expect(($('[data-testid=site-more]') as HTMLDetailsElement).open).toBe(false);
    expect(fieldProblems('network.nameservers')).toEqual(['"dns.example" is not an IP address']);
    expect(text('[data-testid=site-problems]')).toContain('Registry mirrors (#1 endpoints #1)');
    ($$('[data-testid=site-problems] button')[0] as HTMLButtonElement).click();
    await flush();
    expect(($('[data-testid=site-more]') as HTMLDetailsElement).open).toBe(true);
    expect(($('[data-field="network.nameservers"] input') as HTMLInputElement).value).toBe('10.77.0.1, dns.example');
    // edited as one line; saved as a list
    const input = $('[data-field="network.nameservers"] input') as HTMLInputElement;
    input.value = '10.77.0.1 10.77.0.2';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    await flush();
    await click('[data-testid=site-save]');
    expect(f.api.site.save.mock.calls.at(-1)?.[0].network.nameservers).toEqual(['10.77.0.1', '10.77.0.2']);
  });

  it('explains "PCR 11 only" and sends the choice', async () => {
    const f = fakeApi({ site: sampleSite() });
    await render(f, '#/site');
    expect($('[data-testid=pcr11-explanation]')).toBeNull();
    expect($('[data-testid="site-pcrs-7+11"]')?.getAttribute('aria-checked')).toBe('true');
    await click('[data-testid=site-pcrs-11]');
    expect(text('[data-testid=pcr11-explanation]')).toBe(PCR11_TEXT);
    await click('[data-testid=site-handoff-omni]');
    expect($('[data-field="handoff.omni.apiUrl"]')).not.toBeNull();
    await click('[data-testid=site-save]');
    expect(f.api.site.save.mock.calls.at(-1)?.[0]).toMatchObject({
      encryption: { pcrs: '11' },
      handoff: { target: 'omni', omni: { apiUrl: '', joinToken: '' } },
    });
  });

  it('adds, edits and removes machines', async () => {
    const f = fakeApi({ site: { ...sampleSite(), machines: [] } });
    await render(f, '#/site');
    await click('[data-testid=machine-add]');
    expect($('[data-testid=machine-editor-0]')).not.toBeNull();
    expect($('[data-testid=m0-role-controlplane]')?.getAttribute('aria-checked')).toBe('true'); // first one: control plane
    await type('[data-testid=m0-hostname]', 'cp-1');
    await type('[data-testid=m0-mac]', '52:54:00:aa:bb:01');
    await type('[data-testid=m0-disk-serial]', 'S5GXNX0T999');
    await type('[data-testid=m0-asset]', 'SM-7');
    await click('[data-testid=m0-addr-static]');
    await type('[data-testid=m0-address]', '10.77.0.21/24');
    await click('[data-testid=machine-add]');
    expect($('[data-testid=m1-role-worker]')?.getAttribute('aria-checked')).toBe('true');
    await type('[data-testid=m1-hostname]', 'gone');
    await click('[data-testid=machine-remove-1]');
    expect($$('[data-testid^=machine-row-]')).toHaveLength(1);
    await click('[data-testid=site-save]');
    expect(f.api.site.save.mock.calls.at(-1)?.[0].machines).toEqual([
      {
        mac: '52:54:00:aa:bb:01',
        role: 'controlplane',
        hostname: 'cp-1',
        installDisk: { serial: 'S5GXNX0T999' },
        addressing: { mode: 'static', address: '10.77.0.21/24' },
        labels: { assetTag: 'SM-7' },
      },
    ]);
  });

  it('undo puts back the saved site', async () => {
    const f = fakeApi({ site: sampleSite() });
    await render(f, '#/site');
    await type('[data-testid=site-cluster]', 'other');
    await click('[data-testid=site-revert]');
    expect(($('[data-testid=site-cluster]') as HTMLInputElement).value).toBe('stmary-lab2');
    expect($('[data-testid=site-save]')?.hasAttribute('disabled')).toBe(true);
  });

  it('exports the YAML as a download and shows it', async () => {
    const created: Blob[] = [];
    vi.spyOn(URL, 'createObjectURL').mockImplementation((b) => {
      created.push(b as Blob);
      return 'blob:x';
    });
    vi.spyOn(URL, 'revokeObjectURL').mockImplementation(() => {});
    const clicks = vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(() => {});
    const f = fakeApi({ site: sampleSite(), exportYaml: 'cluster: stmary-lab2\nendpoint: https://10.77.0.10:6443\n' });
    await render(f, '#/site');
    await click('[data-testid=site-export]');
    expect(f.api.site.export).toHaveBeenCalled();
    expect(clicks).toHaveBeenCalled();
    expect(await created[0]?.text()).toContain('endpoint: https://10.77.0.10:6443');
    expect(($('[data-testid=site-exported]') as HTMLTextAreaElement).value).toContain('cluster: stmary-lab2');
  });

  it('another tablet saved while nothing was edited: take it; while editing: ask', async () => {
    const f = fakeApi({ site: sampleSite() });
    await render(f, '#/site');
    const other = { exists: true, site: { ...sampleSite(), name: 'From the other tablet' }, problems: [], ready: true, secrets: false, pcr11OnlyExplanation: '' };
    f.emit('site:changed', other);
    await flush();
    expect(($('[data-testid=site-name]') as HTMLInputElement).value).toBe('From the other tablet');
    await type('[data-testid=site-name]', 'Mine');
    f.emit('site:changed', { ...other, site: { ...other.site, name: 'Third' } });
    await flush();
    expect(($('[data-testid=site-name]') as HTMLInputElement).value).toBe('Mine');
    expect($('[data-testid=site-changed-elsewhere]')).not.toBeNull();
  });
});

describe('Discover page: what each machine says about itself', () => {
  it('shows serial, hardware, SecureBoot, TPM, fingerprint and progress', async () => {
    const f = fakeApi({
      site: sampleSite(),
      status: { running: true, iface: 'lab', effective: 'isolated' },
      machines: [
        machine('52:54:00:00:00:01', {
          stage: 'maintenance',
          ip: '10.77.0.20',
          arch: 'x86-64 UEFI',
          attrs: {
            vendor: 'QEMU',
            product: 'Standard PC (Q35 + ICH9, 2009)',
            serial: 'LAB-0001',
            uuid: '8f6f4b3e-0000-4000-8000-000000000001',
            secureBoot: 'on',
            tpm: 'present',
            uki: 'true',
            fingerprint: 'q2Xk7zQ0bW1dN3hT5mVc8aR9yL2pF6sJ4uE0iO7tA1k=',
            talos: 'v1.14.1',
            disks: '1',
            disk0: '/dev/vda 8.0 GiB LABDISK1',
          },
          timeline: [
            { time: '2026-11-29T13:00:00Z', kind: 'dhcp.ack', ip: '10.77.0.20' },
            { time: '2026-11-29T13:00:30Z', kind: 'talos.maintenance', detail: 'QEMU Standard PC, serial LAB-0001, SecureBoot on, TPM present' },
          ],
        }),
        machine('52:54:00:00:00:02', { stage: 'maintenance', attrs: { serial: 'LAB-0002', secureBoot: 'off', tpm: 'absent' } }),
        machine('52:54:00:00:00:03', { stage: 'tftp', problem: 'TFTP: the firmware refused the boot file (SecureBoot: Access Denied)' }),
      ],
    });
    await render(f, '#/discover');
    const one = '[data-testid="machine-52:54:00:00:00:01"]';
    expect(text(`${one} [data-testid=machine-serial]`)).toBe('LAB-0001');
    expect(text(`${one} [data-testid=machine-hw]`)).toBe('QEMU Standard PC (Q35 + ICH9, 2009)');
    expect(text(`${one} [data-testid=machine-secureboot]`)).toBe('SecureBoot on');
    expect($(`${one} [data-testid=machine-secureboot]`)?.classList.contains('ok')).toBe(true);
    expect(text(`${one} [data-testid=machine-tpm]`)).toBe('TPM present');
    expect(text(`${one} [data-testid=machine-firmware]`)).toBe('x86-64 UEFI · booted a signed UKI');
    const groups = $$(`${one} [data-testid=machine-fingerprint] .groups span`).map((e) => e.textContent);
    expect(groups.slice(0, 3)).toEqual(['q2Xk', '7zQ0', 'bW1d']);
    expect(groups).toHaveLength(11);
    // copied as one piece, exactly as the console shows it
    expect(text(`${one} [data-testid=machine-fingerprint] .groups`)).toBe('q2Xk7zQ0bW1dN3hT5mVc8aR9yL2pF6sJ4uE0iO7tA1k=');
    expect($$(`${one} .chips .done`).map((e) => e.textContent?.trim())).toEqual(['DHCP', 'TFTP', 'HTTP', 'Talos maintenance']);
    expect(text(one)).toContain('/dev/vda 8.0 GiB LABDISK1');
    expect(text(one)).toContain('10.77.0.20');
    expect($(`${one} [data-testid=machine-warning]`)).toBeNull();
    expect(text(`${one} .timeline`)).toContain('Talos maintenance mode');
    expect(text(`${one} [data-testid=machine-planned]`)).toBe('In the site: cp-1 · control plane');
    expect(text('[data-testid=discover-tally]')).toBe('2 of 3 in Talos maintenance mode 2 need attention');

    const two = '[data-testid="machine-52:54:00:00:00:02"]';
    expect(text(`${two} [data-testid=machine-unplanned]`)).toBe('Not in the site');
    expect($(`${two} [data-testid=machine-secureboot]`)?.classList.contains('warn')).toBe(true);
    expect(text(`${two} [data-testid=machine-secureboot]`)).toBe('SecureBoot off');
    expect(text(`${two} [data-testid=machine-tpm]`)).toBe('No TPM');
    expect($$(`${two} [data-testid=machine-warning]`)).toHaveLength(2);

    const three = '[data-testid="machine-52:54:00:00:00:03"]';
    expect(text(`${three} [data-testid=machine-problem]`)).toContain('Access Denied');
    expect($(`${three} [data-testid=machine-serial]`)).toBeNull(); // not known: the MAC stands in
    expect(text(`${three} .serial`)).toBe('52:54:00:00:00:03');
    expect(text(`${three} .chips .now`)).toBe('TFTP');
  });

  it('a machine reaching maintenance mode updates live', async () => {
    const f = fakeApi({ status: { running: true, iface: 'lab' }, machines: [machine('aa', { stage: 'http' })] });
    await render(f, '#/discover');
    expect($('[data-testid=machine-aa] [data-testid=machine-serial]')).toBeNull();
    f.emit('netboot:machine', machine('aa', { stage: 'maintenance', attrs: { serial: 'SN-42', secureBoot: 'on', tpm: 'present' } }));
    await flush();
    expect(text('[data-testid=machine-aa] [data-testid=machine-serial]')).toBe('SN-42');
    expect($('[data-testid=machine-aa]')?.getAttribute('data-stage')).toBe('maintenance');
  });
});

describe('Discover page: empty', () => {
  it('points to the virtual lab only when this build has it', async () => {
    const f = fakeApi();
    await render(f, '#/discover');
    expect(text('[data-testid=machines-empty]')).toContain('No servers here?');
    expect($('[data-testid=lab-hint] a')?.getAttribute('href')).toBe('#/network');
    unmount(app!);
    app = undefined;
    await render(fakeApi({ lab: 'missing' }), '#/discover');
    expect($('[data-testid=machines-empty]')).not.toBeNull();
    expect($('[data-testid=lab-hint]')).toBeNull();
  });
});

describe('Network page: the virtual lab', () => {
  it('is hidden when the build has no Lab service', async () => {
    const f = fakeApi({ lab: 'missing' });
    await render(f, '#/network');
    expect(f.api.lab.status).toHaveBeenCalled();
    expect($('[data-testid=lab-panel]')).toBeNull();
    expect($('[data-testid=iface-list]')).not.toBeNull(); // the rest of the page is fine
  });

  it('starts the lab with the chosen machines, firmware and TPM, then lists them', async () => {
    const f = fakeApi();
    await render(f, '#/network');
    expect(text('[data-testid=lab-panel]')).toContain('No servers here? Start the virtual lab');
    expect(text('[data-testid=lab-count]')).toBe('3');
    for (let i = 0; i < 5; i++) await click('[data-testid=lab-more]');
    expect(text('[data-testid=lab-count]')).toBe('6');
    expect($('[data-testid=lab-more]')?.hasAttribute('disabled')).toBe(true);
    await click('[data-testid=lab-fewer]');
    await click('[data-testid=lab-fw-uefi-secureboot]');
    await click('[data-testid=lab-tpm]');
    expect($('[data-testid=lab-tpm]')?.getAttribute('aria-checked')).toBe('false');
    // the page's primary action stays netboot/port choice, not the lab
    expect($('[data-testid=lab-up]')?.classList.contains('primary')).toBe(false);
    const loads = f.api.network.interfaces.mock.calls.length;
    await click('[data-testid=lab-up]');
    expect(f.api.lab.up).toHaveBeenCalledWith({ machines: 5, firmware: 'uefi-secureboot', tpm: false });
    expect($$('[data-testid=lab-machines] li')).toHaveLength(5);
    expect(text('[data-testid=lab-machine-lab-1]')).toContain('UEFI SecureBoot');
    expect(text('[data-testid=lab-machine-lab-1]')).toContain('Booting');
    // the lab port appears: the list is read again
    expect(f.api.network.interfaces.mock.calls.length).toBeGreaterThan(loads);

    f.emit('lab:status', {
      running: true,
      starting: false,
      machines: [{ name: 'lab-1', mac: '52:54:00:00:00:01', firmware: 'uefi', state: 'failed: no bootable device', reason: 'the firmware found nothing to boot' }],
      error: '',
      prereqsMissing: [],
    });
    await flush();
    expect(text('[data-testid=lab-machine-lab-1]')).toContain('Failed');
    expect(text('[data-testid=lab-machine-lab-1]')).toContain('the firmware found nothing to boot');

    await click('[data-testid=lab-down]');
    expect(f.api.lab.down).toHaveBeenCalled();
    expect($('[data-testid=lab-up]')).not.toBeNull();
  });

  it('tells which port to pick once the lab runs', async () => {
    const f = fakeApi({
      lab: { running: true, starting: false, machines: [], error: '', prereqsMissing: [] },
      interfaces: async () => [nic('eth0'), nic('lab', { lab: true, virtual: true })],
    });
    await render(f, '#/network');
    expect(text('[data-testid=lab-next]')).toContain('Choose the lab port below');
    expect(text('[data-testid=iface-lab]')).toContain('Virtual lab');
  });

  it('cannot start without its tools, and says which are missing', async () => {
    const f = fakeApi({ lab: { running: false, starting: false, machines: [], error: '', prereqsMissing: ['swtpm', 'OVMF firmware'] } });
    await render(f, '#/network');
    expect(text('[data-testid=lab-missing]')).toContain('swtpm, OVMF firmware');
    expect($('[data-testid=lab-up]')?.hasAttribute('disabled')).toBe(true);
  });

  it('shows a failed start in plain words', async () => {
    const f = fakeApi({ labUpError: 'lab up: creating the network namespace needs root' });
    await render(f, '#/network');
    await click('[data-testid=lab-up]');
    expect(text('[data-testid=lab-panel] [data-testid=problem]')).toContain('needs root');
  });
});
