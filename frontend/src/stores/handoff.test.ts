import { get } from 'svelte/store';
import { describe, expect, it, vi } from 'vitest';
import { ApiError } from '../api/errors';
import { fakeApi } from '../test/fakeapi';
import { FAKE_SHA, fakeHandoffApi, handoffViewOf } from '../test/fakehandoff';
import { settle } from '../test/fakes';
import { createHandoffStore, groupHash, keyProblem, parseKeys } from './handoff';

const AGE = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
const SSH = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk fleet@hq';

describe('handoff keys', () => {
  it('parses one key a line, without blanks and comments', () => {
    expect(parseKeys(`\n# fleet\n${AGE}\n  ${SSH}  \n\n`)).toEqual([AGE, SSH]);
  });
  it.each([
    [AGE, ''],
    [SSH, ''],
    ['ssh-rsa AAAAB3NzaC1yc2E', ''],
    ['AGE-SECRET-KEY-1QQQ', 'private key'],
    ['-----BEGIN OPENSSH PRIVATE KEY-----', 'private key'],
    [AGE.slice(0, 30), 'cut short'],
    ['age1pq1xyz', 'Post-quantum'],
    ['ecdsa-sha2-nistp256 AAAA', 'Not a public key'],
  ])('%s → %s', (line, want) => {
    const p = keyProblem(line);
    if (want === '') expect(p).toBe('');
    else expect(p).toContain(want);
  });
  it('groups a hash by four', () => {
    expect(groupHash('3f2a91c0ab')).toBe('3f2a 91c0 ab');
  });
});

describe('handoff store', () => {
  it('writes the bundle, saves the ciphertext, then wipes only when confirmed', async () => {
    const f = fakeApi();
    const save = vi.fn();
    const s = createHandoffStore(f.api, save);
    await s.load();
    expect(get(s).view?.secrets).toBe(true);

    const e = await s.exportBundle(`${AGE}\n${SSH}`);
    expect(f.api.handoff.export).toHaveBeenCalledWith({ recipients: [AGE, SSH] });
    expect(save).toHaveBeenCalledWith('stmary-handoff-20261129-150405.age', btoa('age!'));
    expect(e?.sha256).toBe(FAKE_SHA);
    expect(e && 'data' in e).toBe(false);
    expect(get(s).view?.canWipe).toBe(true);

    expect(await s.wipe(FAKE_SHA, false)).toBe(false);
    expect(get(s).actionError).toEqual({ action: 'wipe', message: expect.stringContaining('copied') });
    expect(await s.wipe(FAKE_SHA, true)).toBe(true);
    expect(get(s).view).toMatchObject({ wiped: true, secrets: false });
    s.dispose();
  });

  it('sends a passphrase instead of keys, and keeps no copy', async () => {
    const f = fakeApi();
    const s = createHandoffStore(f.api, vi.fn());
    await s.exportBundle(AGE, 'fleet manager phrase 7');
    expect(f.api.handoff.export).toHaveBeenCalledWith({ recipients: [], passphrase: 'fleet manager phrase 7' });
    expect(JSON.stringify(get(s))).not.toContain('fleet manager phrase 7');
  });

  it('shows a refusal verbatim and saves nothing', async () => {
    const f = fakeApi();
    const save = vi.fn();
    const s = createHandoffStore(f.api, save);
    expect(await s.exportBundle('not a key')).toBeNull();
    expect(get(s).actionError?.message).toContain('not a usable public key');
    expect(save).not.toHaveBeenCalled();
  });

  it('follows handoff:changed and says when the build has no Handoff service', async () => {
    const f = fakeApi();
    const s = createHandoffStore(f.api);
    f.emit('handoff:changed', handoffViewOf({ wiped: true, blockers: null }));
    expect(get(s).view).toMatchObject({ wiped: true, blockers: [] });
    const missing = fakeApi();
    missing.api.handoff.status = vi.fn(async () => {
      throw new ApiError('call Handoff.Status: no such method', 'Handoff.Status', 404);
    });
    const m = createHandoffStore(missing.api);
    await m.load();
    await settle();
    expect(get(m).available).toBe(false);
  });

  it('saves the last bundle again', async () => {
    const f = fakeApi();
    f.api.handoff = fakeHandoffApi(handoffViewOf());
    const save = vi.fn();
    const s = createHandoffStore(f.api, save);
    expect(await s.saveAgain()).toBe(false);
    await s.exportBundle(AGE);
    expect(await s.saveAgain()).toBe(true);
    expect(save).toHaveBeenCalledTimes(2);
  });
});
