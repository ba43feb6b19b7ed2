#!/usr/bin/env node
// Runs shell.e2e.mjs against e2e/mockserver.mjs (no Go build needed), twice:
// plain web mode, and kiosk mode behind an access PIN. For UI work; the real
// e2e runs against `onramp serve` (build/e2e.sh).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = mkdtempSync(join(tmpdir(), 'onramp-mock-e2e-'));

function startMock(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, 'mockserver.mjs')], {
      env: { ...process.env, MOCK_PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error('mock server did not start within 10 s'));
    }, 10_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      const m = /on (http:\/\/[^\s]+)/.exec(chunk);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`mock server exited with ${code}`)));
  });
}

function run(env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(here, 'shell.e2e.mjs')], {
      env: { ...process.env, ...env },
      stdio: 'inherit',
    });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

const cases = [
  { name: 'web', mock: { MOCK_DATADIR: '/tmp/onramp-mock-web', MOCK_VERSION: 'v0.0.0-mock' }, pin: '' },
  { name: 'kiosk+PIN', mock: { MOCK_DATADIR: '/tmp/onramp-mock-kiosk', MOCK_MODE: 'kiosk', MOCK_PIN: '2468' }, pin: '2468' },
];

let failures = 0;
for (const c of cases) {
  const { child, url } = await startMock(c.mock);
  console.log(`--- ${c.name} against ${url}`);
  const code = await run({
    ONRAMP_URL: url,
    ONRAMP_EXPECT_DATADIR: c.mock.MOCK_DATADIR,
    ONRAMP_EXPECT_VERSION: c.mock.MOCK_VERSION ?? '',
    ONRAMP_PIN: c.pin,
    ONRAMP_SCREENSHOT: join(outDir, `${c.name.replace(/\W+/g, '-')}.png`),
  });
  child.removeAllListeners('exit');
  child.kill('SIGTERM');
  if (code !== 0) failures++;
}
console.log(`mock e2e: screenshots in ${outDir}`);
if (failures === 0 && !process.env.KEEP_SHOTS) rmSync(outDir, { recursive: true, force: true });
process.exit(failures ? 1 : 0);
