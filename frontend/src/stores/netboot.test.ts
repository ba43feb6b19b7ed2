import { get } from 'svelte/store';
import { describe, expect, it, vi } from 'vitest';
import { eventDetail, eventLabel, formatBytes, formatDuration, isProblem } from '../lib/events';
import { fakeApi, machine } from '../test/fakeapi';
import { createMachinesStore, createNetbootStore, stageIndex, upsertMachine } from './netboot';
import { createSettingsStore } from './settings';

describe('netboot store', () => {
  it('follows netboot:status events and reports a failed start', async () => {
    const f = fakeApi({ startError: 'choose the interface cabled to the cart switch first' });
    const s = createNetbootStore(f.api);
    await s.load();
    expect(get(s).data).toEqual({ running: false });
    f.emit('netboot:status', { running: true, iface: 'lab', mode: 'auto', effective: 'isolated' });
    expect(get(s).data?.running).toBe(true);
    f.emit('netboot:status', { running: false, error: 'the boot services stopped: bind: address in use' });
    expect(get(s).data?.error).toContain('address in use');
    expect(await s.start('', 'auto')).toBe(false);
    expect(get(s.actionError)).toBe('choose the interface cabled to the cart switch first');
    expect(get(s.busy)).toBe(false);
  });
});

describe('machines', () => {
  it('upserts by MAC and keeps first-seen order', () => {
    const a = machine('aa', { firstSeen: '2026-11-29T13:00:00Z' });
    const b = machine('bb', { firstSeen: '2026-11-29T12:59:00Z' });
    let list = upsertMachine([], a);
    list = upsertMachine(list, b);
    expect(list.map((m) => m.mac)).toEqual(['bb', 'aa']);
    list = upsertMachine(list, { ...a, stage: 'http' });
    expect(list.map((m) => [m.mac, m.stage])).toEqual([
      ['bb', 'dhcp'],
      ['aa', 'http'],
    ]);
  });

  it('loads the list and applies netboot:machine events', async () => {
    const f = fakeApi({ machines: [machine('aa')] });
    const s = createMachinesStore(f.api);
    await s.load();
    f.emit('netboot:machine', machine('bb', { firstSeen: '2026-11-29T14:00:00Z' }));
    f.emit('netboot:machine', { nonsense: true });
    expect(get(s).data?.map((m) => m.mac)).toEqual(['aa', 'bb']);
    s.dispose();
    f.emit('netboot:machine', machine('cc'));
    expect(get(s).data).toHaveLength(2);
  });

  it('reads the whole list again after bus:resync (events were dropped)', async () => {
    const f = fakeApi({ machines: [machine('aa')] });
    const s = createMachinesStore(f.api);
    await s.load();
    expect(f.api.netboot.machines).toHaveBeenCalledTimes(1);
    f.emit('bus:resync', { reason: 'events were dropped for a slow client' });
    await vi.waitFor(() => expect(f.api.netboot.machines).toHaveBeenCalledTimes(2));
    s.dispose();
    f.emit('bus:resync', {});
    expect(f.api.netboot.machines).toHaveBeenCalledTimes(2);
  });

  it('places stages on the boot path', () => {
    expect(['dhcp', 'tftp', 'http', 'maintenance', 'ignored'].map(stageIndex)).toEqual([0, 1, 2, 3, -1]);
  });
});

describe('settings follow settings:changed', () => {
  it('takes changes made elsewhere', async () => {
    const f = fakeApi();
    const s = createSettingsStore(f.api);
    await s.load();
    f.emit('settings:changed', { theme: 'dark', iface: 'eth9', netbootMode: 'proxy' });
    expect(get(s).data).toEqual({ theme: 'dark', iface: 'eth9', netbootMode: 'proxy' });
  });
});

describe('timeline words', () => {
  const cases = [
    { e: { time: '', kind: 'tftp.done', file: 'ipxe.efi', bytes: 1_048_576, durationNs: 250e6 }, label: 'TFTP download done', detail: 'ipxe.efi · 1.0 MiB · 250 ms', bad: false },
    { e: { time: '', kind: 'dhcp.ack', ip: '10.77.0.20' }, label: 'DHCP address given', detail: '10.77.0.20', bad: false },
    { e: { time: '', kind: 'http.error', file: '/vmlinuz', error: 'file not found in the boot assets' }, label: 'HTTP failed', detail: '/vmlinuz · file not found in the boot assets', bad: true },
    { e: { time: '', kind: 'alarm.foreign-dhcp', detail: '192.168.1.1' }, label: 'Another DHCP server seen', detail: '192.168.1.1', bad: true },
    { e: { time: '', kind: 'talos.maintenance', detail: 'QEMU Standard PC, serial LAB-0001' }, label: 'Talos maintenance mode', detail: 'QEMU Standard PC, serial LAB-0001', bad: false },
    { e: { time: '', kind: 'talos.unknown-thing' }, label: 'talos unknown thing', detail: '', bad: false },
  ];
  for (const c of cases) {
    it(c.e.kind, () => {
      expect(eventLabel(c.e)).toBe(c.label);
      expect(eventDetail(c.e)).toBe(c.detail);
      expect(isProblem(c.e)).toBe(c.bad);
    });
  }

  it('formats sizes and durations', () => {
    expect([512, 2048, 15 * 1024 * 1024, 3 * 1024 ** 3].map(formatBytes)).toEqual(['512 B', '2.0 KiB', '15 MiB', '3.0 GiB']);
    expect([5e5, 1.5e9].map(formatDuration)).toEqual(['1 ms', '1.5 s']);
  });
});
