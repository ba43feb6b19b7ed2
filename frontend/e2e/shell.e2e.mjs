#!/usr/bin/env node
// End-to-end check of the Onramp shell in headless Debian Chromium, driven by
// playwright-core (no browser download). Run against a live `onramp serve`:
//
//   ONRAMP_URL=http://127.0.0.1:18080 ONRAMP_EXPECT_DATADIR=/tmp/x npm run e2e
//
// Env:
//   ONRAMP_URL              base URL (default http://127.0.0.1:18080)
//   ONRAMP_EXPECT_DATADIR   System page must show exactly this data dir
//   ONRAMP_EXPECT_VERSION   System page must show exactly this version
//   ONRAMP_PIN              access PIN, used if the PIN screen appears
//   ONRAMP_SCREENSHOT       PNG path (default ../build/e2e/shell.png from frontend/)
//   ONRAMP_CHROMIUM         browser binary (default /usr/bin/chromium)
//   ONRAMP_E2E_TIMEOUT_MS   whole-run limit (default 120000)
//   ONRAMP_SITE_YAML        site file to import (default ../talos/testdata/site.yaml)
//
// It imports the sample site, breaks and fixes its endpoint, and generates
// the cluster secrets (about a second of key generation). It never starts
// netboot or the virtual lab and never sends a DHCP probe, so on Install no
// site machine can have been discovered, and on Verify nothing is verified.
//
// Exits non-zero with a message on the first failure; prints
// "N passed, N failed" last.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const baseURL = (env.ONRAMP_URL ?? 'http://127.0.0.1:18080').replace(/\/+$/, '');
const expectDataDir = env.ONRAMP_EXPECT_DATADIR ?? '';
const expectVersion = env.ONRAMP_EXPECT_VERSION ?? '';
const pin = env.ONRAMP_PIN ?? '';
const shotEnv = env.ONRAMP_SCREENSHOT ?? '';
const screenshot = shotEnv
  ? isAbsolute(shotEnv)
    ? shotEnv
    : resolve(process.cwd(), shotEnv)
  : resolve(here, '..', '..', 'build', 'e2e', 'shell.png');
const executablePath = env.ONRAMP_CHROMIUM ?? '/usr/bin/chromium';
const limitMs = Number(env.ONRAMP_E2E_TIMEOUT_MS ?? 120_000);
const siteYamlPath = env.ONRAMP_SITE_YAML ?? resolve(here, '..', '..', 'talos', 'testdata', 'site.yaml');
const siteYaml = readFileSync(siteYamlPath, 'utf8');
const WAIT = 15_000;

// The visit's steps as the UI must show them (src/lib/steps.ts).
const STEPS = [
  ['site', 'Site', 'site'],
  ['network', 'Network', 'network'],
  ['discover', 'Discover', 'discover'],
  ['secureboot', 'SecureBoot', 'secureboot'],
  ['install', 'Install', 'install'],
  ['verify', 'Verify', 'verify'],
  ['handoff', 'Handoff', 'handoff'],
  ['report', 'Report', 'report'],
  ['system', 'System', 'system'],
];

let passed = 0;
let failed = 0;
const t0 = Date.now();

function log(msg) {
  console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

async function check(name, fn) {
  try {
    await fn();
    passed++;
    log(`ok   ${name}`);
  } catch (err) {
    failed++;
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    log(`FAIL ${name}: ${msg}`);
    throw err;
  }
}

const userDataDir = mkdtempSync(join(tmpdir(), 'onramp-e2e-'));
let context;
const pageErrors = [];
const consoleErrors = [];

const watchdog = setTimeout(() => {
  console.error(`e2e: FAILED: no result after ${limitMs} ms`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, limitMs);

async function textOf(page, selector) {
  const el = page.locator(selector);
  await el.first().waitFor({ state: 'visible', timeout: WAIT });
  return (await el.first().innerText()).trim();
}

// The Install service (app/install.go) must be bound: the page says so when it is not.
async function installPage(page, root) {
  await page.locator(`${root}, [data-testid=install-missing], [data-testid=verify-missing]`).first().waitFor({ state: 'visible' });
  if (await page.locator('[data-testid=install-missing], [data-testid=verify-missing]').first().isVisible()) {
    fail('this onramp build has no Install service bound (Install.Status answers "no such method"): the Go side (app/install.go, App.Services) is missing');
  }
}

async function smallTargets(page, sel) {
  return page.$$eval(sel, (els) =>
    els
      .filter((e) => e.getBoundingClientRect().height > 0)
      .filter((e) => e.getBoundingClientRect().height < 47.5)
      .map((e) => `${e.textContent?.trim().slice(0, 40) || e.getAttribute('aria-label') || e.tagName} (${Math.round(e.getBoundingClientRect().height)}px)`),
  );
}

async function unlockIfAsked(page) {
  const pinScreen = page.locator('[data-testid=pin-screen]');
  const connected = page.locator('[data-testid=connection][data-state=connected]');
  await Promise.race([
    pinScreen.waitFor({ state: 'visible', timeout: WAIT }).catch(() => {}),
    connected.waitFor({ state: 'visible', timeout: WAIT }).catch(() => {}),
  ]);
  if (!(await pinScreen.isVisible())) return;
  if (!pin) fail('the app asks for an access PIN; set ONRAMP_PIN');
  await page.locator('[data-testid=pin-input]').fill(pin);
  await page.locator('[data-testid=pin-submit]').click();
  await pinScreen.waitFor({ state: 'hidden', timeout: WAIT }).catch(async () => {
    const why = await page.locator('[data-testid=pin-error]').innerText().catch(() => '');
    fail(`PIN not accepted${why ? `: ${why}` : ''}`);
  });
}

async function main() {
  log(`base URL ${baseURL}, browser ${executablePath}`);
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: { width: 1024, height: 600 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });

  await check('app loads', async () => {
    const res = await page.goto(baseURL + '/', { waitUntil: 'domcontentloaded' });
    if (!res || !res.ok()) fail(`GET ${baseURL}/ answered ${res ? res.status() : 'nothing'}`);
    await page.locator('[data-testid=page-title]').waitFor({ state: 'visible' });
    await unlockIfAsked(page);
  });

  await check('connection indicator says connected', async () => {
    const ind = page.locator('[data-testid=connection]');
    try {
      await page.locator('[data-testid=connection][data-state=connected]').waitFor({ state: 'visible' });
    } catch {
      fail(`indicator is "${await ind.getAttribute('data-state').catch(() => '?')}", not connected`);
    }
    const label = (await ind.innerText()).trim();
    if (label !== 'Connected') fail(`indicator label is "${label}"`);
  });

  for (const [id, title, kind] of STEPS) {
    await check(`step ${title} renders`, async () => {
      await page.locator(`[data-testid=nav-${id}]`).click();
      await page.waitForURL((u) => u.hash === `#/${id}`);
      const h1 = await textOf(page, '[data-testid=page-title]');
      if (h1 !== title) fail(`heading is "${h1}", want "${title}"`);
      const current = await page.locator(`[data-testid=nav-${id}]`).getAttribute('aria-current');
      if (current !== 'page') fail('nav item is not marked current');
      if (kind === 'not-yet') {
        const panel = await textOf(page, '[data-testid=not-yet]');
        if (!/Not yet available/.test(panel) || !/Comes with/.test(panel)) fail('placeholder panel does not say what brings it');
      } else if (kind === 'secureboot') {
        // A fresh data dir: no vault, so the step asks for one and offers no keys.
        await page.locator('[data-testid=secureboot-status], [data-testid=secureboot-missing]').first().waitFor({ state: 'visible' });
        if (await page.locator('[data-testid=secureboot-missing]').isVisible()) fail('this build has no SecureBoot service bound (app/secureboot.go, App.Services)');
        if ((await page.locator('[data-testid=secureboot-status]').getAttribute('data-vault')) !== 'false') fail('the vault shows as unlocked in a fresh data dir');
      } else if (kind === 'site') {
        await page.locator('[data-testid=site-status]').waitFor({ state: 'visible' });
      } else if (kind === 'install') {
        // A fresh data dir: no site yet, so that is the one site-wide blocker.
        await installPage(page, '[data-testid=install-status]');
        const blockers = await page.locator('[data-testid=install-blocker]').allInnerTexts();
        log(`     blockers: ${blockers.map((b) => b.split('\n')[0]).join(' | ') || '(none)'}`);
        if (!blockers.some((b) => /Fill in the site first/.test(b))) fail(`site-wide blockers are ${JSON.stringify(blockers)}, want "Fill in the site first"`);
        const fix = await page.locator('[data-testid=install-blocker] a').first().getAttribute('href');
        if (fix !== '#/site') fail(`the blocker links to "${fix}", want #/site`);
        if (await page.locator('[data-testid=node-install], [data-testid=install-all]').count()) fail('an Install button is offered with no site');
      } else if (kind === 'handoff') {
        // No site yet: the step says so and offers nothing to write or wipe.
        await page.locator('[data-testid=handoff-status], [data-testid=handoff-missing]').first().waitFor({ state: 'visible' });
        if (await page.locator('[data-testid=handoff-missing]').isVisible()) fail('this build has no Handoff service bound (app/handoff.go, App.Services)');
        const blockers = await page.locator('[data-testid=handoff-blocker]').allInnerTexts();
        if (!blockers.some((b) => /Fill in the site first/.test(b))) fail(`handoff blockers are ${JSON.stringify(blockers)}`);
        if (!(await page.locator('[data-testid=handoff-export]').isDisabled())) fail('Write is offered with no site');
      } else if (kind === 'report') {
        await page.locator('[data-testid=problem], [data-testid=report-summary], [data-testid=report-missing]').first().waitFor({ state: 'visible' });
        if (await page.locator('[data-testid=report-missing]').isVisible()) fail('this build has no Report service bound (app/report.go, App.Services)');
        const why = await textOf(page, '[data-testid=problem]');
        if (!/no site yet/.test(why)) fail(`report without a site says "${why}"`);
      } else if (kind === 'verify') {
        await installPage(page, '[data-testid=verify-cluster]');
        const boot = await textOf(page, '[data-testid=cluster-bootstrap]');
        if (!/Not bootstrapped/.test(boot)) fail(`cluster line says "${boot}"`);
        const tally = await textOf(page, '[data-testid=verify-tally]');
        if (!/^0 of/.test(tally)) fail(`tally says "${tally}"`);
      } else if (kind === 'discover') {
        await page.locator('[data-testid=machines], [data-testid=machines-empty]').first().waitFor({ state: 'visible' });
        const count = await textOf(page, '[data-testid=machine-count]');
        const serving = await page.locator('[data-testid=discover-status] .badge').first().innerText();
        log(`     ${count}, ${serving.trim().toLowerCase()}`);
        // This run never starts netboot: no machine can have booted.
        if (count !== '0 machines') fail(`expected no machines, the page says "${count}"`);
        const empty = await textOf(page, '[data-testid=machines-empty]');
        if (!/No machines seen yet/.test(empty)) fail(`empty state says "${empty}"`);
        mkdirSync(dirname(screenshot), { recursive: true });
        await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-discover.png' });
      } else if (kind === 'network') {
        await page.locator('[data-testid=netboot-panel]').waitFor({ state: 'visible' });
        await page.locator('[data-testid=iface-list] > li').first().waitFor({ state: 'visible' });
        const n = await page.locator('[data-testid=iface-list] > li').count();
        if (n < 1) fail('no network interfaces listed');
        log(`     ${n} interface(s) listed`);
        // The virtual lab panel shows when this build has the Lab service.
        // It is only looked at, never started.
        await page.waitForTimeout(300);
        const lab = page.locator('[data-testid=lab-panel]');
        if (await lab.isVisible()) {
          const up = page.locator('[data-testid=lab-up]');
          const how = (await up.isVisible()) ? `offered${(await up.isDisabled()) ? ' (tools missing)' : ''}` : 'running';
          log(`     virtual lab panel: ${how}`);
          await page.locator('[data-testid=lab-panel]').scrollIntoViewIfNeeded();
          await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-lab.png' });
        } else {
          log('     virtual lab panel: hidden (no Lab service in this build)');
        }
      }
    });
  }

  const fieldProblem = (path) => page.locator(`[data-field="${path}"] [data-testid=field-problem]`);

  await check('Site: import talos/testdata/site.yaml → ready, no problems', async () => {
    await page.locator('[data-testid=nav-site]').click();
    await page.waitForURL((u) => u.hash === '#/site');
    await page.locator('[data-testid=site-import-open]').click();
    await page.locator('[data-testid=site-yaml]').fill(siteYaml);
    await page.locator('[data-testid=site-import]').click();
    const err = page.locator('[data-testid=import-error]');
    await Promise.race([
      page.locator('[data-testid=site-status][data-ready=true]').waitFor({ state: 'visible' }),
      err.waitFor({ state: 'visible' }).then(async () => fail(`import refused: ${await err.innerText()}`)),
    ]);
    const n = await page.locator('[data-testid=site-status]').getAttribute('data-problems');
    if (n !== '0') fail(`${n} problems after import`);
    if (await page.locator('[data-testid=site-problems]').isVisible()) fail('a problem summary is shown');
    const cluster = await page.locator('[data-testid=site-cluster]').inputValue();
    if (cluster !== 'stmary-lab2') fail(`cluster field is "${cluster}"`);
    const rows = await page.locator('[data-testid^=machine-row-]').count();
    if (rows !== 2) fail(`${rows} machines listed, want 2`);
    log(`     cluster ${cluster}, ${rows} machines, ready`);
  });

  await check('Site: a broken endpoint shows its problem next to the field', async () => {
    await page.locator('[data-testid=site-endpoint]').fill('http://10.77.0.10');
    await page.locator('[data-testid=site-save]').click();
    await page.locator('[data-testid=site-status][data-ready=false]').waitFor({ state: 'visible' });
    const msg = (await fieldProblem('endpoint').first().innerText()).trim();
    if (!/https:\/\/host:6443/.test(msg)) fail(`endpoint problem says "${msg}"`);
    const summary = await textOf(page, '[data-testid=site-problems]');
    if (!/API endpoint/.test(summary)) fail(`summary does not name the field: "${summary}"`);
    const others = await page.locator('[data-testid=field-problem]').count();
    if (others !== 1) fail(`${others} field problems shown, want only the endpoint's`);
    log(`     endpoint: ${msg}`);
    await page.locator('[data-field=endpoint]').scrollIntoViewIfNeeded();
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-site-problem.png' });
  });

  await check('Site: fixing the endpoint makes it ready again', async () => {
    await page.locator('[data-testid=site-endpoint]').fill('https://10.77.0.10:6443');
    await page.locator('[data-testid=site-save]').click();
    await page.locator('[data-testid=site-status][data-ready=true]').waitFor({ state: 'visible' });
    if ((await fieldProblem('endpoint').count()) !== 0) fail('the endpoint problem is still shown');
  });

  await check('Site: generate cluster secrets (shown as existing, never their content)', async () => {
    const t = Date.now();
    await page.locator('[data-testid=site-generate]').click();
    await page.locator('[data-testid=site-secrets][data-secrets=true]').waitFor({ state: 'visible', timeout: 60_000 });
    const words = await textOf(page, '[data-testid=secrets-exist]');
    if (/BEGIN|PRIVATE|-----/.test(await page.content())) fail('secret material is on the page');
    log(`     secrets generated in ${((Date.now() - t) / 1000).toFixed(1)} s: "${words.slice(0, 40)}…"`);
    await page.mouse.move(1000, 590);
    await page.evaluate(() => document.querySelector('main')?.scrollTo({ top: 0 }));
    await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-site.png' });
  });

  await check('Site page: touch targets and width', async () => {
    await page.locator('[data-testid=machine-edit-0]').click();
    await page.locator('[data-testid=machine-editor-0]').waitFor({ state: 'visible' });
    // A checkbox's touch target is the label around it (clicking the label toggles it).
    const small = await page.$$eval('main button, main input:not([type=file]), main summary', (els) =>
      els
        .map((e) => (e.matches('input[type=checkbox], input[type=radio]') && e.closest('label')) || e)
        .filter((e) => e.getBoundingClientRect().height > 0)
        .filter((e) => e.getBoundingClientRect().height < 47.5)
        .map((e) => `${e.textContent?.trim() || e.getAttribute('aria-label') || e.tagName} (${Math.round(e.getBoundingClientRect().height)}px)`),
    );
    if (small.length) fail(`too small: ${small.join(', ')}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) fail(`page is ${overflow}px wider than the screen`);
    await page.locator('[data-testid=machine-edit-0]').click();
  });

  await check('Site: the SecureBoot image keys are filled in (from the site file)', async () => {
    const uki = await page.locator('[data-testid=site-uki-fpr]').inputValue();
    const pcr = await page.locator('[data-testid=site-pcr-fpr]').inputValue();
    if (!/^[0-9a-f]{64}$/.test(uki) || !/^[0-9a-f]{64}$/.test(pcr)) fail(`UKI "${uki}", PCR "${pcr}": want 64 hex each`);
    const labKeys = page.locator('[data-testid=site-lab-keys]');
    log(`     UKI ${uki.slice(0, 16)}…, PCR ${pcr.slice(0, 16)}…; lab keys button: ${(await labKeys.isVisible()) ? (await labKeys.innerText()).trim() : 'hidden'}`);
  });

  await check('Install: site ready, every site machine listed and none discovered', async () => {
    await page.locator('[data-testid=nav-install]').click();
    await page.waitForURL((u) => u.hash === '#/install');
    await installPage(page, '[data-testid=install-status]');
    await page.locator('[data-testid=install-status][data-blockers="0"]').waitFor({ state: 'visible' }).catch(async () => {
      fail(`site-wide blockers remain: ${JSON.stringify(await page.locator('[data-testid=install-blocker]').allInnerTexts())}`);
    });
    const cards = page.locator('[data-testid^=install-node-]');
    const n = await cards.count();
    if (n !== 2) fail(`${n} machine cards, want the site's 2`);
    const hosts = await page.locator('[data-testid=node-hostname]').allInnerTexts();
    if (hosts.join(',') !== 'cp-1,worker-1') fail(`hostnames ${hosts.join(',')}`);
    for (let i = 0; i < n; i++) {
      const card = cards.nth(i);
      if ((await card.getAttribute('data-ready')) !== 'false') fail(`${hosts[i]} is ready without being discovered`);
      const why = (await card.locator('[data-testid=node-blocker]').innerText()).trim();
      if (!/Not seen on the network yet|maintenance mode/i.test(why)) fail(`${hosts[i]}: blocker says "${why}"`);
      log(`     ${hosts[i]}: ${why.split('\n')[0]}`);
    }
    if (await page.locator('[data-testid=node-install], [data-testid=install-all], [data-testid=node-confirm]').count()) fail('install offered for undiscovered machines');
    const small = await smallTargets(page, 'main button, main a.btn, main label.confirm');
    if (small.length) fail(`too small: ${small.join(', ')}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) fail(`page is ${overflow}px wider than the screen`);
    await page.mouse.move(1000, 590);
    await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-install.png' });
  });

  await check('Verify: nothing is verified, nothing green', async () => {
    await page.locator('[data-testid=nav-verify]').click();
    await page.waitForURL((u) => u.hash === '#/verify');
    await installPage(page, '[data-testid=verify-cluster]');
    const cards = page.locator('[data-testid^=verify-node-]');
    const n = await cards.count();
    if (n !== 2) fail(`${n} node cards, want 2`);
    const verdicts = await cards.evaluateAll((els) => els.map((e) => e.getAttribute('data-verdict')));
    if (verdicts.some((v) => v !== 'not-checked')) fail(`verdicts ${verdicts.join(',')}, want not-checked`);
    if (await page.locator('[data-testid^=verify-node-] .badge.ok, [data-testid^=verify-node-] td.ok').count()) fail('something is green without evidence');
    if (!(await page.locator('[data-testid=verify-again]').first().isDisabled())) fail('Verify is offered for a node that is not installed');
    const small = await smallTargets(page, 'main button, main a.btn');
    if (small.length) fail(`too small: ${small.join(', ')}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) fail(`page is ${overflow}px wider than the screen`);
    await page.mouse.move(1000, 590);
    await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-verify.png' });
  });

  await check('System page shows the real backend', async () => {
    await page.locator('[data-testid=nav-system]').click();
    await page.waitForURL((u) => u.hash === '#/system');
    const dataDir = await textOf(page, '[data-testid=sys-datadir]');
    const version = await textOf(page, '[data-testid=sys-version]');
    if (!dataDir) fail('data dir is empty');
    if (expectDataDir && dataDir !== expectDataDir) fail(`data dir is "${dataDir}", want "${expectDataDir}"`);
    if (!version) fail('version is empty');
    if (expectVersion && version !== expectVersion) fail(`version is "${version}", want "${expectVersion}"`);
    const privs = await page.locator('[data-testid=sys-privileges] li').count();
    if (privs < 3) fail(`privileges list has ${privs} rows`);
    log(`     version ${version}, data dir ${dataDir}`);
  });

  await check('touch targets are at least 48px and nothing overflows 1024x600', async () => {
    const small = await page.$$eval('nav a, button', (els) =>
      els
        .filter((e) => e.getBoundingClientRect().height > 0)
        .filter((e) => e.getBoundingClientRect().height < 47.5)
        .map((e) => `${e.textContent?.trim() || e.getAttribute('aria-label')} (${Math.round(e.getBoundingClientRect().height)}px)`),
    );
    if (small.length) fail(`too small: ${small.join(', ')}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) fail(`page is ${overflow}px wider than the screen`);
  });

  await check('theme choice is saved and applied', async () => {
    const before = (await page.locator('.seg [aria-checked=true]').getAttribute('data-testid'))?.replace('theme-', '') ?? 'system';
    const other = before === 'dark' ? 'light' : 'dark';
    await page.locator(`[data-testid=theme-${other}]`).click();
    await page.waitForFunction((t) => document.documentElement.dataset.theme === t, other);
    await page.locator(`[data-testid=theme-${other}][aria-checked=true]`).waitFor();
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.mouse.move(1000, 590);
    await page.waitForTimeout(400); // let colour transitions finish
    await page.screenshot({ path: screenshot.replace(/\.png$/, '') + `-${other}.png` });
    // Put it back as it was (the backend keeps it in its data dir).
    await page.locator(`[data-testid=theme-${before}]`).click();
    await page.locator(`[data-testid=theme-${before}][aria-checked=true]`).waitFor();
  });

  await check('Install and Verify in the dark theme (screenshots)', async () => {
    const before = (await page.locator('.seg [aria-checked=true]').getAttribute('data-testid'))?.replace('theme-', '') ?? 'system';
    await page.locator('[data-testid=theme-dark]').click();
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
    for (const id of ['install', 'verify']) {
      await page.locator(`[data-testid=nav-${id}]`).click();
      await page.waitForURL((u) => u.hash === `#/${id}`);
      await page.locator(`[data-testid^=${id}-node-]`).first().waitFor({ state: 'visible' });
      await page.mouse.move(1000, 590);
      await page.waitForTimeout(400);
      await page.screenshot({ path: screenshot.replace(/\.png$/, '') + `-${id}-dark.png` });
    }
    await page.locator('[data-testid=nav-system]').click();
    await page.locator(`[data-testid=theme-${before}]`).click();
    await page.locator(`[data-testid=theme-${before}][aria-checked=true]`).waitFor();
  });

  await check('deep link #/network opens the Network step', async () => {
    await page.goto(baseURL + '/#/network', { waitUntil: 'domcontentloaded' });
    await unlockIfAsked(page);
    const h1 = await textOf(page, '[data-testid=page-title]');
    if (h1 !== 'Network') fail(`heading is "${h1}"`);
    await page.locator('[data-testid=iface-list] > li').first().waitFor({ state: 'visible' });
  });

  await check(`screenshots saved`, async () => {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.mouse.move(1000, 590);
    await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-network.png' });
    // A fresh tab, untouched by the pointer, for the artifact.
    const fresh = await context.newPage();
    fresh.on('pageerror', (err) => pageErrors.push(err.message));
    await fresh.setViewportSize({ width: 1024, height: 600 });
    await fresh.goto(baseURL + '/#/system', { waitUntil: 'domcontentloaded' });
    await unlockIfAsked(fresh);
    await fresh.locator('[data-testid=connection][data-state=connected]').waitFor({ state: 'visible' });
    await fresh.locator('[data-testid=sys-datadir]').waitFor({ state: 'visible' });
    await fresh.screenshot({ path: screenshot });
    log(`     ${screenshot}`);
  });

  // Step 7 and 8 against the real Go side: a bundle for a fresh age key,
  // saved by the browser, opened by the age CLI (a peer we did not write),
  // then the secrets wiped and the Report showing both.
  await check('Handoff: write the bundle, age decrypts the download, wipe; Report shows it', async () => {
    const work = mkdtempSync(join(tmpdir(), 'onramp-e2e-handoff-'));
    try {
      let pub = '';
      let haveAge = true;
      try {
        execFileSync('age-keygen', ['-o', join(work, 'fleet.key')], { stdio: 'pipe' });
        pub = execFileSync('age-keygen', ['-y', join(work, 'fleet.key')], { encoding: 'utf8' }).trim();
      } catch {
        haveAge = false;
        pub = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
        log('     age-keygen missing (apt-get install age): the download is not decrypted');
      }
      await page.locator('[data-testid=nav-handoff]').click();
      await page.waitForURL((u) => u.hash === '#/handoff');
      await page.locator('[data-testid=handoff-status][data-secrets=true]').waitFor({ state: 'visible' });
      const blockers = await page.locator('[data-testid=handoff-blocker]').allInnerTexts();
      if (blockers.length) fail(`handoff blocked: ${blockers.join(' | ')}`);
      if (!(await page.locator('[data-testid=handoff-wipe]').isDisabled())) fail('Wipe is offered before a bundle was written');
      await page.locator('[data-testid=handoff-keys]').fill(pub);
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid=handoff-export]').click()]);
      const file = join(work, download.suggestedFilename());
      await download.saveAs(file);
      await page.locator('[data-testid=handoff-sha]').waitFor({ state: 'visible' });
      const shown = await page.locator('[data-testid=handoff-sha]').getAttribute('data-sha');
      const got = createHash('sha256').update(readFileSync(file)).digest('hex');
      if (shown !== got) fail(`the page shows SHA-256 ${shown}, the saved file has ${got}`);
      log(`     saved ${download.suggestedFilename()} sha256 ${got.slice(0, 16)}…`);
      if (haveAge) {
        execFileSync('age', ['-d', '-i', join(work, 'fleet.key'), '-o', join(work, 'bundle.tar.gz'), file], { stdio: 'pipe' });
        const list = execFileSync('tar', ['-tzf', join(work, 'bundle.tar.gz')], { encoding: 'utf8' }).trim().split('\n');
        for (const want of ['manifest.json', 'talosconfig', 'secrets.yaml', 'inventory.json', 'report.json', 'report.html']) {
          if (!list.includes(want)) fail(`the decrypted bundle lacks ${want}: ${list.join(', ')}`);
        }
        log(`     age -d + tar -t: ${list.join(', ')}`);
      }
      const small = await smallTargets(page, '[data-page=handoff] button, [data-page=handoff] .confirm');
      if (small.length) fail(`too small: ${small.join(', ')}`);
      await page.mouse.move(1000, 590);
      await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-handoff.png' });
      await page.locator('[data-testid=handoff-copied]').check();
      await page.locator('[data-testid=handoff-wipe]').click();
      await page.locator('[data-testid=handoff-status][data-wiped=true]').waitFor({ state: 'visible' });

      await page.locator('[data-testid=nav-report]').click();
      await page.waitForURL((u) => u.hash === '#/report');
      await page.locator('[data-testid=report-audit][data-verified=true]').waitFor({ state: 'visible' });
      const handoff = await textOf(page, '[data-testid=report-handoff]');
      if (!handoff.includes(got.slice(0, 16))) fail(`the report's handoff line says "${handoff}"`);
      const small2 = await smallTargets(page, '[data-page=report] button');
      if (small2.length) fail(`too small: ${small2.join(', ')}`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (overflow > 0) fail(`report page is ${overflow}px wider than the screen`);
      const [rep] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid=report-save-html]').click()]);
      const html = join(work, rep.suggestedFilename());
      await rep.saveAs(html);
      const page1 = readFileSync(html, 'utf8');
      if (!page1.includes(got) || /<script\b|<link\b|src=/.test(page1)) fail('the saved HTML report lacks the bundle hash or refers to outside assets');
      await page.mouse.move(1000, 590);
      await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-report.png' });
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  await check('no script errors in the page', async () => {
    if (pageErrors.length) fail(pageErrors.join(' | '));
    if (consoleErrors.length) log(`     console errors (not fatal): ${consoleErrors.join(' | ')}`);
  });
}

let code = 0;
try {
  await main();
} catch (err) {
  code = 1;
  if (!(err instanceof Failure) && failed === 0) {
    failed++;
    console.error(`e2e: FAILED: ${err instanceof Error ? err.stack : String(err)}`);
  } else {
    console.error(`e2e: FAILED: ${err instanceof Error ? err.message : String(err)}`);
  }
} finally {
  clearTimeout(watchdog);
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(code);
