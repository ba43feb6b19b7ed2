import { get } from 'svelte/store';
import { describe, expect, it } from 'vitest';
import { sampleInfo } from '../test/fakeapi';
import { privileges } from './privileges';
import { createRouter, DEFAULT_ROUTE, href, parseHash } from './router';
import { STEPS, VISIT_STEPS } from './steps';
import { applyTheme, cachedTheme } from './theme';

describe('parseHash', () => {
  const cases: Array<[string, string, boolean]> = [
    ['', DEFAULT_ROUTE, false],
    ['#', DEFAULT_ROUTE, false],
    ['#/', DEFAULT_ROUTE, false],
    ['#/system', 'system', false],
    ['#system', 'system', false],
    ['#/System/', 'system', false],
    ['#/network?iface=eth0', 'network', false],
    ['#/secureboot/details', 'secureboot', false],
    ['#/nope', DEFAULT_ROUTE, true],
    ['#/__proto__', DEFAULT_ROUTE, true],
  ];
  for (const [hash, id, fallback] of cases) {
    it(`${JSON.stringify(hash)} → ${id}`, () => {
      expect(parseHash(hash)).toEqual({ id, fallback });
    });
  }

  it('round-trips every page', () => {
    for (const s of STEPS) expect(parseHash(href(s.id)).id).toBe(s.id);
  });
});

describe('createRouter', () => {
  it('follows hashchange', () => {
    window.location.hash = '#/network';
    const r = createRouter(window);
    const seen: string[] = [];
    const off = r.subscribe((v) => seen.push(v.id));
    window.location.hash = '#/system';
    window.dispatchEvent(new HashChangeEvent('hashchange'));
    off();
    window.location.hash = '#/report';
    window.dispatchEvent(new HashChangeEvent('hashchange'));
    expect(seen).toEqual(['network', 'system']);
    expect(get(r).id).toBe('report');
  });
});

describe('steps', () => {
  it('lists the visit in order, numbered, with System apart', () => {
    expect(VISIT_STEPS.map((s) => s.title)).toEqual([
      'Site',
      'Network',
      'Discover',
      'SecureBoot',
      'Install',
      'Verify',
      'Handoff',
      'Report',
    ]);
    expect(VISIT_STEPS.map((s) => s.n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(STEPS.at(-1)?.id).toBe('system');
  });

  it('says what brings every step that is not built yet', () => {
    for (const s of STEPS.filter((x) => !x.available)) {
      expect(s.comesWith, s.id).toBeTruthy();
      expect(s.will?.length, s.id).toBeGreaterThan(0);
    }
  });
});

describe('privileges', () => {
  const cases = [
    { root: true, bind: false, raw: false, want: [true, true, true] },
    { root: false, bind: true, raw: false, want: [false, true, false] },
    { root: false, bind: false, raw: true, want: [false, false, true] },
    { root: false, bind: false, raw: false, want: [false, false, false] },
  ];
  for (const c of cases) {
    it(`root=${c.root} bind=${c.bind} raw=${c.raw}`, () => {
      const p = privileges({ ...sampleInfo, root: c.root, capNetBindService: c.bind, capNetRaw: c.raw });
      expect(p.map((x) => x.ok)).toEqual(c.want);
    });
  }

  it('explains the consequence in plain words', () => {
    const p = privileges({ ...sampleInfo, root: false, capNetBindService: false, capNetRaw: false });
    expect(p[1]?.consequence).toContain('DHCP on port 67 needs root or CAP_NET_BIND_SERVICE');
    expect(p[2]?.consequence).toContain('CAP_NET_RAW');
  });
});

describe('theme', () => {
  it('sets data-theme for light/dark and clears it for system; caches the choice', () => {
    const root = document.createElement('html');
    const store = new Map<string, string>();
    const storage = {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => void store.set(k, v),
    } as Storage;
    expect(cachedTheme(storage)).toBe('system');
    applyTheme('dark', root, storage);
    expect(root.dataset['theme']).toBe('dark');
    expect(cachedTheme(storage)).toBe('dark');
    applyTheme('system', root, storage);
    expect(root.dataset['theme']).toBeUndefined();
    store.set('onramp.theme', 'bogus');
    expect(cachedTheme(storage)).toBe('system');
  });
});
