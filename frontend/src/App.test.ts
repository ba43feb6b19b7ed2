import { flushSync, mount, tick, unmount } from 'svelte';
import { writable } from 'svelte/store';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import App from './App.svelte';
import { appContext, createAppState } from './lib/appstate';
import { parseHash, type Route } from './lib/router';
import { fakeApi, machine, nic } from './test/fakeapi';
import { settle } from './test/fakes';

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
  delete document.documentElement.dataset['theme'];
});

async function render(f: ReturnType<typeof fakeApi>, hash = '#/site') {
  const route = writable<Route>(parseHash(hash));
  app = mount(App, { target, props: { route }, context: appContext(createAppState(f.api)) });
  await settle(20);
  flushSync();
  return {
    route,
    go: async (h: string) => {
      route.set(parseHash(h));
      await settle(20);
      flushSync();
    },
  };
}

const $ = (sel: string) => target.querySelector(sel);
const text = (sel: string) => $(sel)?.textContent?.trim() ?? '';

describe('App shell', () => {
  it('renders every step with its heading and marks unbuilt ones', async () => {
    const f = fakeApi();
    const { go } = await render(f);
    expect(f.api.start).toHaveBeenCalled();
    expect(target.querySelectorAll('nav a')).toHaveLength(9);
    // Every step is built now: SecureBoot was the last placeholder.
    await go('#/secureboot');
    expect(text('[data-testid=page-title]')).toBe('SecureBoot');
    expect($('[data-testid=not-yet]')).toBeNull();
    expect($('[data-testid=secureboot-status]')).not.toBeNull();
    expect($('[data-testid=nav-secureboot]')?.getAttribute('aria-current')).toBe('page');
  });

  it('Install and Verify are real pages now', async () => {
    const { go } = await render(fakeApi());
    await go('#/install');
    expect(text('[data-testid=page-title]')).toBe('Install');
    expect($('[data-testid=not-yet]')).toBeNull();
    expect($('[data-testid=install-status]')).not.toBeNull();
    await go('#/verify');
    expect(text('[data-testid=page-title]')).toBe('Verify');
    expect($('[data-testid=not-yet]')).toBeNull();
    expect($('[data-testid=verify-cluster]')).not.toBeNull();
  });

  it('the Site step is a real page now', async () => {
    const { go } = await render(fakeApi());
    await go('#/site');
    expect(text('[data-testid=page-title]')).toBe('Site');
    expect($('[data-testid=not-yet]')).toBeNull();
    expect($('[data-testid=site-status]')).not.toBeNull();
  });

  it('shows the connection state', async () => {
    const f = fakeApi();
    await render(f);
    expect($('[data-testid=connection]')?.getAttribute('data-state')).toBe('connected');
    f.connection.set('reconnecting');
    flushSync();
    expect(text('[data-testid=connection]')).toBe('Reconnecting…');
    const before = f.api.system.info.mock.calls.length;
    f.connection.set('connected');
    await settle(20);
    flushSync();
    // back from a lost link: data is read again
    expect(f.api.system.info.mock.calls.length).toBe(before + 1);
  });

  it('System page shows System.Info and applies the saved theme', async () => {
    const f = fakeApi({ settings: { theme: 'dark', iface: '', netbootMode: 'auto' } });
    const { go } = await render(f);
    await go('#/system');
    expect(text('[data-testid=sys-datadir]')).toBe('/var/lib/onramp');
    expect(text('[data-testid=sys-version]')).toBe('v0.1.0');
    expect(target.querySelectorAll('[data-testid=sys-privileges] li')).toHaveLength(3);
    expect(text('[data-testid=sys-prereqs]')).toContain('apt-get install swtpm');
    expect(document.documentElement.dataset['theme']).toBe('dark');

    ($('[data-testid=theme-light]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.settings.set).toHaveBeenCalledWith({ theme: 'light', iface: '', netbootMode: 'auto' });
    expect(document.documentElement.dataset['theme']).toBe('light');
  });

  it("System page saves the technician's name for the audit trail", async () => {
    const f = fakeApi({ settings: { theme: 'system', iface: '', netbootMode: 'auto', technician: 'Grace' } });
    const { go } = await render(f);
    await go('#/system');
    const input = $('[data-testid=sys-technician-name]') as HTMLInputElement;
    expect(input.value).toBe('Grace');
    expect(($('[data-testid=sys-technician-save]') as HTMLButtonElement).disabled).toBe(true);
    input.value = '  Ada Lovelace ';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    ($('[data-testid=sys-technician-save]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.settings.set).toHaveBeenCalledWith({ theme: 'system', iface: '', netbootMode: 'auto', technician: 'Ada Lovelace' });
    expect(($('[data-testid=sys-technician-name]') as HTMLInputElement).value).toBe('Ada Lovelace');
  });

  it('Network page: the cart switch port gets the primary action and choosing saves iface', async () => {
    const f = fakeApi({
      interfaces: async () => [
        nic('lo', { loopback: true, virtual: true }),
        nic('eth0', { hint: 'default route' }),
        nic('enp3s0', { cartHint: true, hint: 'wired, link up, no default route — looks like a cart switch' }),
      ],
    });
    const { go } = await render(f);
    await go('#/network');
    const items = [...target.querySelectorAll('[data-testid=iface-list] > li')].map((li) => li.getAttribute('data-testid'));
    expect(items).toEqual(['iface-enp3s0', 'iface-eth0', 'iface-lo']);
    expect($('[data-testid=choose-enp3s0]')?.classList.contains('primary')).toBe(true);
    expect($('[data-testid=choose-eth0]')?.classList.contains('primary')).toBe(false);
    expect($('[data-testid=choose-lo]')).toBeNull();
    expect(text('[data-testid=netboot-panel]')).toContain('Not chosen');
    expect($('[data-testid=netboot-start]')).toBeNull();

    ($('[data-testid=choose-enp3s0]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.settings.set).toHaveBeenCalledWith({ theme: 'system', iface: 'enp3s0', netbootMode: 'auto' });
    expect(text('[data-testid=netboot-status]')).toContain('Netboot will serve on enp3s0 only');
    expect(text('[data-testid=iface-enp3s0]')).toContain('In use');
    // Now the page's one primary action is starting netboot.
    expect(target.querySelectorAll('.primary')).toHaveLength(1);
    expect($('[data-testid=netboot-start]')?.classList.contains('primary')).toBe(true);

    ($('[data-testid=mode-proxy]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.settings.set).toHaveBeenLastCalledWith({ theme: 'system', iface: 'enp3s0', netbootMode: 'proxy' });

    ($('[data-testid=netboot-start]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.netboot.start).toHaveBeenCalledWith({ iface: 'enp3s0', mode: 'proxy', allowForeign: false });
    expect($('[data-testid=netboot-panel]')?.getAttribute('data-running')).toBe('true');
    expect(text('[data-testid=netboot-status]')).toContain('serving on enp3s0');
    expect(($('[data-testid=choose-eth0]') as HTMLButtonElement).disabled).toBe(true);

    ($('[data-testid=netboot-stop]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.netboot.stop).toHaveBeenCalled();
    expect($('[data-testid=netboot-panel]')?.getAttribute('data-running')).toBe('false');
  });

  it('Network page: a failed start is shown in plain words', async () => {
    const f = fakeApi({
      settings: { theme: 'system', iface: 'eth1', netbootMode: 'auto' },
      interfaces: async () => [nic('eth1')],
      startError: 'start netboot: listen udp :67: bind: permission denied',
    });
    const { go } = await render(f);
    await go('#/network');
    ($('[data-testid=netboot-start]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(text('[data-testid=netboot-panel] [data-testid=problem]')).toContain('bind: permission denied');
    expect($('[data-testid=netboot-panel]')?.getAttribute('data-running')).toBe('false');
  });

  it('Network page: the DHCP check shows what answered', async () => {
    const f = fakeApi({
      settings: { theme: 'system', iface: 'eth1', netbootMode: 'auto' },
      interfaces: async () => [nic('eth1')],
      probe: async () => [{ serverId: '10.0.0.1', offeredIp: '10.0.0.50', proxy: false, summary: 'DHCP server 10.0.0.1 offered 10.0.0.50' }],
    });
    const { go } = await render(f);
    await go('#/network');
    ($('[data-testid=probe]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.netboot.probe).toHaveBeenCalledWith('eth1');
    expect(text('[data-testid=probe-result]')).toContain('1 DHCP server found');
    expect(text('[data-testid=probe-result]')).toContain('DHCP server 10.0.0.1 offered 10.0.0.50');
  });

  it('Discover page: machines appear live with their boot progress', async () => {
    const f = fakeApi({
      status: { running: true, iface: 'eth1', mode: 'auto', effective: 'isolated' },
      machines: [machine('52:54:00:00:00:01', { stage: 'tftp', ip: '10.77.0.20' })],
    });
    const { go } = await render(f);
    await go('#/discover');
    expect(text('[data-testid=discover-status]')).toContain('Serving');
    expect(text('[data-testid=machine-count]')).toBe('1 machine');
    const card = '[data-testid="machine-52:54:00:00:00:01"]';
    expect(text(`${card} .chips .done`)).toBe('DHCP');
    expect(text(`${card} .chips .now`)).toBe('TFTP');

    f.emit(
      'netboot:machine',
      machine('52:54:00:00:00:02', {
        firstSeen: '2026-11-29T13:01:00Z',
        stage: 'ignored',
        problem: 'not a PXE client: no option 60 PXEClient',
      }),
    );
    f.emit('netboot:machine', machine('52:54:00:00:00:01', { stage: 'http' }));
    flushSync();
    expect(text('[data-testid=machine-count]')).toBe('2 machines');
    expect(text(`${card} .chips .now`)).toBe('HTTP');
    expect(text('[data-testid="machine-52:54:00:00:00:02"]')).toContain('not a PXE client');
    const order = [...target.querySelectorAll('[data-testid=machines] > li')].map((li) => li.getAttribute('data-testid'));
    expect(order).toEqual(['machine-52:54:00:00:00:01', 'machine-52:54:00:00:00:02']);
  });

  it('Discover page: says how to start when netboot is off', async () => {
    const f = fakeApi();
    const { go } = await render(f);
    await go('#/discover');
    expect(text('[data-testid=discover-status]')).toContain('Not serving');
    expect($('[data-testid=goto-network]')?.getAttribute('href')).toBe('#/network');
    expect(text('[data-testid=machines-empty]')).toContain('Start netboot on the Network step');
  });

  it('shows an error with a retry instead of fake data', async () => {
    let fail = true;
    const f = fakeApi({
      interfaces: async () => {
        if (fail) throw new Error('list interfaces: permission denied');
        return [nic('eth0')];
      },
    });
    const { go } = await render(f);
    await go('#/network');
    expect(text('[data-testid=problem]')).toContain('list interfaces: permission denied');
    expect($('[data-testid=iface-list]')).toBeNull();
    fail = false;
    ([...target.querySelectorAll('[data-testid=problem] button')][0] as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect($('[data-testid=problem]')).toBeNull();
    expect($('[data-testid=iface-eth0]')).not.toBeNull();
  });

  it('web PIN screen appears when a PIN is needed and sends it', async () => {
    const f = fakeApi();
    f.api.login.mockImplementation(async (pin: string) => {
      if (pin !== '2468') throw new Error('wrong PIN');
      f.auth.set('ok');
    });
    await render(f);
    expect($('[data-testid=pin-screen]')).toBeNull();
    f.auth.set('required');
    flushSync();
    expect($('[data-testid=pin-screen]')).not.toBeNull();

    const input = $('[data-testid=pin-input]') as HTMLInputElement;
    const submit = async (pin: string) => {
      input.value = pin;
      input.dispatchEvent(new Event('input', { bubbles: true }));
      flushSync();
      ($('[data-testid=pin-submit]') as HTMLButtonElement).click();
      await settle(20);
      flushSync();
    };
    await submit('1111');
    expect(text('[data-testid=pin-error]')).toBe('wrong PIN');
    await submit('2468');
    expect(f.api.login).toHaveBeenLastCalledWith('2468');
    await tick();
    expect($('[data-testid=pin-screen]')).toBeNull();
  });

  it('kiosk mode offers Exit, which needs the admin PIN', async () => {
    const f = fakeApi({ session: { mode: 'kiosk', authRequired: false, authenticated: true } });
    f.api.shell.quit.mockImplementation(async (pin: string) => {
      if (pin !== '1234') throw new Error('wrong PIN');
    });
    await render(f);
    const exit = $('[data-testid=kiosk-exit]') as HTMLButtonElement;
    expect(exit).not.toBeNull();
    exit.click();
    flushSync();
    expect($('[role=dialog]')).not.toBeNull();
    // type on the on-screen keypad
    const key = (k: string) =>
      [...target.querySelectorAll<HTMLButtonElement>('[role=dialog] .key')].find((b) => b.textContent?.trim() === k)!;
    for (const k of ['9', '9']) key(k).click();
    flushSync();
    ($('[role=dialog] [data-testid=pin-submit]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.shell.quit).toHaveBeenLastCalledWith('99');
    expect(text('[role=dialog] [data-testid=pin-error]')).toBe('wrong PIN');
    for (const k of ['1', '2', '3', '4']) key(k).click();
    flushSync();
    ($('[role=dialog] [data-testid=pin-submit]') as HTMLButtonElement).click();
    await settle(20);
    flushSync();
    expect(f.api.shell.quit).toHaveBeenLastCalledWith('1234');
    expect($('[role=dialog]')).toBeNull();
  });

  it('web mode has no Exit button', async () => {
    await render(fakeApi());
    expect($('[data-testid=kiosk-exit]')).toBeNull();
  });
});
