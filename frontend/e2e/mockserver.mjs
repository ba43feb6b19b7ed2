#!/usr/bin/env node
// A stand-in for `onramp serve` implementing the web transport's contract, for
// UI development and for trying the e2e script without the Go side:
//
//   node e2e/mockserver.mjs           (after `npm run build`)
//
// Env: MOCK_HOST (127.0.0.1), MOCK_PORT (18080), MOCK_PIN (access PIN; unset =
// none), MOCK_ADMIN_PIN (kiosk exit PIN, default 1234), MOCK_MODE (web|kiosk),
// MOCK_DATADIR, MOCK_VERSION, MOCK_PING_MS (15000), MOCK_DIST (../dist),
// MOCK_MACHINES (a JSON file of MachineView[], e.g. saved from a real
// `onramp serve` with `curl -X POST .../api/call/Netboot.Machines -d '[]'`,
// shown on Discover for UI work; default none).
//
// Interfaces, privileges and lab tools are read from this machine (like the
// Go side does), not invented. The real e2e runs against `onramp serve`.

import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { networkInterfaces } from 'node:os';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const host = env.MOCK_HOST ?? '127.0.0.1';
const port = Number(env.MOCK_PORT ?? 18080);
const accessPin = env.MOCK_PIN ?? '';
const adminPin = env.MOCK_ADMIN_PIN ?? '1234';
const mode = env.MOCK_MODE === 'kiosk' ? 'kiosk' : 'web';
const dataDir = env.MOCK_DATADIR ?? '/tmp/onramp-mock';
const version = env.MOCK_VERSION ?? 'v0.0.0-mock';
const pingMs = Number(env.MOCK_PING_MS ?? 15000);
const dist = resolve(env.MOCK_DIST ?? join(here, '..', 'dist'));

const sessions = new Set();
let settings = { theme: 'system', iface: '', netbootMode: 'auto' };
const streams = new Set();

function read(path) {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

function capEff() {
  const line = read('/proc/self/status').split('\n').find((l) => l.startsWith('CapEff:'));
  return line ? BigInt('0x' + line.split(/\s+/)[1]) : 0n;
}

function which(cmd) {
  for (const dir of (env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return '';
}

function firstExisting(paths) {
  return paths.find((p) => existsSync(p)) ?? '';
}

function systemInfo() {
  const caps = capEff();
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const ovmf = firstExisting(['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd']);
  const qemu = which('qemu-system-x86_64');
  const swtpm = which('swtpm');
  return {
    version,
    commit: 'mock',
    goVersion: 'n/a (mock server)',
    machineryVersion: 'n/a (mock server)',
    dataDir,
    mode,
    root,
    capNetBindService: (caps & (1n << 10n)) !== 0n,
    capNetRaw: (caps & (1n << 13n)) !== 0n,
    labPrereqs: [
      { name: 'qemu-system-x86_64', present: !!qemu, path: qemu, hint: 'apt-get install qemu-system-x86' },
      { name: 'OVMF firmware', present: !!ovmf, path: ovmf, hint: 'apt-get install ovmf' },
      { name: 'swtpm', present: !!swtpm, path: swtpm, hint: 'apt-get install swtpm' },
    ],
  };
}

function defaultRouteIfaces() {
  const out = new Set();
  for (const line of read('/proc/net/route').split('\n').slice(1)) {
    const f = line.split(/\s+/);
    if (f[1] === '00000000') out.add(f[0]);
  }
  return out;
}

function interfaces() {
  const addrs = networkInterfaces();
  const defaults = defaultRouteIfaces();
  let names = [];
  try {
    names = readdirSync('/sys/class/net');
  } catch {
    names = Object.keys(addrs);
  }
  return names.sort().map((name) => {
    const sys = `/sys/class/net/${name}`;
    let virtual = false;
    try {
      virtual = realpathSync(sys).includes('/devices/virtual/');
    } catch {
      virtual = false;
    }
    const flags = parseInt(read(`${sys}/flags`) || '0', 16);
    const loopback = (flags & 0x8) !== 0 || name === 'lo';
    const oper = read(`${sys}/operstate`);
    const up = oper === 'up' || (loopback && (flags & 0x1) !== 0);
    const wireless = existsSync(`${sys}/wireless`);
    const list = (addrs[name] ?? []).map((a) => `${a.address}/${a.cidr?.split('/')[1] ?? ''}`);
    const cartHint = !loopback && !virtual && !wireless && up && !defaults.has(name);
    let hint = '';
    if (loopback) hint = 'loopback: this device only';
    else if (cartHint) hint = 'wired, link up, no default route — looks like a cart switch';
    else if (defaults.has(name)) hint = 'carries the default route — likely the site uplink, not the cart switch';
    else if (virtual) hint = 'virtual interface';
    else if (!up) hint = 'link down — no cable or switch off';
    else if (wireless) hint = 'wireless';
    return {
      name,
      mac: read(`${sys}/address`),
      addrs: list,
      up,
      mtu: Number(read(`${sys}/mtu`) || 0),
      wireless,
      loopback,
      virtual,
      cartHint,
      hint,
    };
  });
}

// ---- Site: a small stand-in for talos.Site (YAML subset, main checks) ------

/** Parse the YAML subset site files use: maps, lists, [flow, lists], quoted scalars, comments. */
function parseYaml(text) {
  const lines = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const noComment = raw.replace(/(^|\s)#.*$/, '');
    if (!noComment.trim()) return;
    if (/^\s*\t/.test(raw)) throw new CallError(422, `import site: yaml: line ${i + 1}: found a tab character`);
    lines.push({ n: i + 1, indent: noComment.search(/\S/), text: noComment.trim() });
  });
  let pos = 0;
  const scalar = (v, n) => {
    v = v.trim();
    if (v === '' || v === '~' || v === 'null') return null;
    if (/^".*"$/.test(v)) return JSON.parse(v);
    if (/^'.*'$/.test(v)) return v.slice(1, -1).replace(/''/g, "'");
    if (v.startsWith('[')) {
      if (!v.endsWith(']')) throw new CallError(422, `import site: yaml: line ${n}: did not find expected ',' or ']'`);
      const inner = v.slice(1, -1).trim();
      return inner ? inner.split(',').map((x) => scalar(x, n)) : [];
    }
    if (v === '{}') return {};
    if (/^-?\d+$/.test(v)) return Number(v);
    if (v === 'true' || v === 'false') return v === 'true';
    return v;
  };
  function block(indent) {
    const first = lines[pos];
    if (!first || first.indent < indent) return null;
    return first.text.startsWith('- ') || first.text === '-' ? list(first.indent) : map(first.indent);
  }
  function map(indent, into = {}) {
    while (pos < lines.length && lines[pos].indent === indent && !lines[pos].text.startsWith('- ')) {
      const { n, text: t } = lines[pos];
      const m = /^("[^"]*"|[^:]+):(?:\s+(.*))?$/.exec(t);
      if (!m) throw new CallError(422, `import site: yaml: line ${n}: could not find expected ':'`);
      const key = m[1].replace(/^"|"$/g, '');
      pos++;
      if (m[2] !== undefined && m[2] !== '') into[key] = scalar(m[2], n);
      else into[key] = block(indent + 1);
    }
    if (pos < lines.length && lines[pos].indent > indent)
      throw new CallError(422, `import site: yaml: line ${lines[pos].n}: mapping values are not allowed in this context`);
    return into;
  }
  function list(indent) {
    const out = [];
    while (pos < lines.length && lines[pos].indent === indent && (lines[pos].text.startsWith('- ') || lines[pos].text === '-')) {
      const { n, text: t } = lines[pos];
      const rest = t.slice(1).trim();
      if (!rest) {
        pos++;
        out.push(block(indent + 1));
      } else if (/^[^"'[{][^:]*:(\s|$)/.test(rest)) {
        // "- key: v" starts a map whose other keys are indented under it
        const inner = indent + 2;
        lines[pos] = { n, indent: inner, text: rest };
        out.push(map(inner));
      } else {
        pos++;
        out.push(scalar(rest, n));
      }
    }
    return out;
  }
  const doc = block(0);
  if (pos < lines.length) throw new CallError(422, `import site: yaml: line ${lines[pos].n}: did not find expected key`);
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new CallError(422, 'import site: empty site document');
  return doc;
}

/** Render JSON-shaped data as block YAML. */
function toYaml(v, indent = '') {
  const q = (s) => (/^[\w./:+@-][\w ./:+@,-]*$/.test(s) && !/^(true|false|null|\d+)$/.test(s) && !/: /.test(s) ? s : JSON.stringify(s));
  const lines = [];
  for (const [k, val] of Object.entries(v)) {
    if (val === undefined || val === null || val === '') continue;
    if (Array.isArray(val)) {
      if (!val.length) continue;
      if (val.every((x) => typeof x !== 'object')) lines.push(`${indent}${k}: [${val.map((x) => (typeof x === 'string' ? q(x) : x)).join(', ')}]`);
      else {
        lines.push(`${indent}${k}:`);
        for (const item of val) {
          const body = toYaml(item, indent + '    ').split('\n').filter(Boolean);
          if (body.length) lines.push(`${indent}  - ${body[0].trim()}`, ...body.slice(1));
        }
      }
    } else if (typeof val === 'object') {
      const body = toYaml(val, indent + '  ');
      if (body) lines.push(`${indent}${k}:`, body);
    } else lines.push(`${indent}${k}: ${typeof val === 'string' ? q(val) : val}`);
  }
  return lines.join('\n');
}

const PCR11_ONLY =
  'PCR 7 measures the SecureBoot variables (PK, KEK, db, dbx). A firmware or dbx (revocation list) update changes PCR 7, ' +
  'and a key sealed to PCR 7 then no longer unseals. "PCR 11 only" trusts the signed UKI policy alone. (mock server)';

const SITE_KEYS = new Set(['name', 'cluster', 'talosVersion', 'kubernetesVersion', 'endpoint', 'installer', 'schematic', 'installDisk', 'network', 'registryMirrors', 'encryption', 'handoff', 'events', 'secureBoot', 'machines']);

function siteProblems(s) {
  const ps = [];
  const add = (path, message) => ps.push({ path, message });
  if (!s.cluster) add('cluster', 'is required');
  else if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s.cluster))
    add('cluster', `"${s.cluster}" must be lower-case letters, digits and '-', at most 63 characters`);
  if (s.talosVersion && !/^v1\.14\.\d+$/.test(s.talosVersion)) add('talosVersion', `${s.talosVersion} is not supported: this generator builds Talos v1.14 documents`);
  if (!s.endpoint) add('endpoint', 'is required (https://VIP-or-first-node:6443)');
  else if (!/^https:\/\/[^/:\s]+:\d+$/.test(s.endpoint)) add('endpoint', `"${s.endpoint}" must look like https://host:6443`);
  const pcrs = s.encryption?.pcrs ?? '7+11';
  if (pcrs && !['7+11', '11'].includes(pcrs)) add('encryption.pcrs', `"${pcrs}" is not a PCR policy ("7+11" or "11")`);
  (s.network?.nameservers ?? []).forEach((ns, i) => {
    if (!/^[\d.]+$|:/.test(ns)) add(`network.nameservers[${i}]`, `"${ns}" is not an IP address`);
  });
  const target = s.handoff?.target ?? '';
  if (!['', 'omni', 'bundle'].includes(target)) add('handoff.target', `"${target}" is not a handoff target (none, omni, bundle)`);
  if (target === 'omni' && !s.handoff?.omni) add('handoff.omni', 'is required for target "omni"');
  if (target === 'omni' && s.handoff?.omni && !s.handoff.omni.joinToken) add('handoff.omni.joinToken', 'is required');
  let cps = 0;
  (s.machines ?? []).forEach((m, i) => {
    const p = `machines[${i}]`;
    if (!m.mac && !m.uuid) add(p, 'set mac or uuid to identify the machine');
    if (m.mac && !/^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i.test(m.mac)) add(`${p}.mac`, `"${m.mac}" is not an Ethernet MAC address`);
    if (m.role === 'controlplane') cps++;
    else if (!m.role) add(`${p}.role`, 'is required (controlplane or worker)');
    else if (m.role !== 'worker') add(`${p}.role`, `"${m.role}" is not a role (controlplane or worker)`);
    if (!m.hostname) add(`${p}.hostname`, 'is required');
    else if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(m.hostname)) add(`${p}.hostname`, `"${m.hostname}" must be one lower-case DNS label (letters, digits, '-')`);
    if (!m.installDisk && !s.installDisk) add(`${p}.installDisk`, "is required (or set the site's installDisk)");
    const a = m.addressing ?? {};
    if (a.mode === 'static') {
      if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a.address ?? '')) add(`${p}.addressing.address`, `"${a.address ?? ''}" is not an address in CIDR form (10.77.0.11/24)`);
    } else if (a.address || a.gateway) add(`${p}.addressing`, 'address and gateway are only used with mode static');
  });
  if ((s.machines ?? []).length && cps === 0) add('machines', 'at least one machine must have role controlplane');
  for (const k of ['ukiSigningKeyFingerprint', 'pcrSigningKeyFingerprint']) {
    const v = s.secureBoot?.[k];
    if (v && !/^[0-9a-f]{64}$/.test(v)) add(`secureBoot.${k}`, `"${v}" is not a SHA-256 fingerprint (64 lower-case hex characters)`);
  }
  return ps;
}

let site = null;
let siteSecrets = false;

function siteView() {
  const problems = site ? siteProblems(site) : [];
  return { exists: !!site, ...(site ? { site } : {}), problems, ready: !!site && problems.length === 0, secrets: siteSecrets, pcr11OnlyExplanation: PCR11_ONLY };
}

function saveSite(s) {
  if (!s || typeof s !== 'object' || Array.isArray(s)) throw new CallError(400, 'call Site.Save: argument 1: expected an object');
  for (const k of Object.keys(s)) if (!SITE_KEYS.has(k)) throw new CallError(400, `call Site.Save: argument 1: unknown field "${k}"`);
  site = { network: {}, encryption: { recovery: {} }, handoff: {}, events: {}, ...s, machines: s.machines ?? [] };
  if (site.handoff?.omni) site.handoff = { ...site.handoff, omni: { ...site.handoff.omni } };
  broadcast('site:changed', siteView());
  return siteView();
}

// ---- Lab: reports what this machine lacks; never starts QEMU -------------

function labStatus() {
  const missing = [];
  if (!which('qemu-system-x86_64')) missing.push('qemu-system-x86_64');
  if (!which('swtpm')) missing.push('swtpm');
  if (!firstExisting(['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd'])) missing.push('OVMF firmware');
  return { running: false, starting: false, machines: [], error: '', prereqsMissing: missing, imageKeys: LAB_KEYS };
}

// The lab's image keys as lab/kit has them (kit.LabUKISigningKeyFingerprint …).
const LAB_KEYS = {
  ukiSigningKeyFingerprint: '282e8130b7070f107aaecc25d3992ca4440270860b09088792a5075fab0d13f8',
  pcrSigningKeyFingerprint: '6755d582ed83cbba5ce1f3981a65aa4d44f26222efbabcbd2c391a8ad428cb37',
};

// ---- Install: the mock discovers nothing, so nothing can be installed ------

const INSTALL_STEPS = [
  ['config', 'Generate config'],
  ['apply', 'Apply over pinned TLS'],
  ['install', 'Install and reboot'],
  ['bootstrap', 'Bootstrap etcd'],
  ['health', 'Kubernetes healthy'],
  ['verify', 'Verify SecureBoot and encryption'],
];

function installView() {
  const blockers = [];
  if (!site) blockers.push('Fill in the site first');
  else if (siteProblems(site).length) blockers.push('The site has problems: fix them on the Site step');
  else if (!siteSecrets) blockers.push('Generate the cluster secrets on the Site step');
  if (site && (!site.secureBoot?.ukiSigningKeyFingerprint || !site.secureBoot?.pcrSigningKeyFingerprint))
    blockers.push('Set the expected UKI and PCR signing-key fingerprints on the Site step');
  const nodes = (site?.machines ?? []).map((m) => ({
    mac: m.mac ?? '',
    ...(m.uuid ? { uuid: m.uuid } : {}),
    hostname: m.hostname,
    role: m.role,
    ready: false,
    blocker: 'Not seen on the network yet',
    state: 'idle',
    steps: INSTALL_STEPS.map(([name, title]) => ({ name, title, state: 'pending' })),
  }));
  return { nodes, blockers, bootstrapped: false, healthy: false, kubeconfig: false };
}

class CallError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const services = {
  'System.Info': () => systemInfo(),
  'Network.Interfaces': () => interfaces(),
  'Settings.Get': () => settings,
  'Settings.Set': (s) => {
    if (!s || typeof s !== 'object') throw new CallError(400, 'settings: expected an object');
    if (!['system', 'light', 'dark'].includes(s.theme)) throw new CallError(400, `settings: unknown theme "${s.theme}"`);
    if (!['auto', 'isolated', 'proxy'].includes(s.netbootMode))
      throw new CallError(400, `settings: unknown netboot mode "${s.netbootMode}"`);
    if (typeof s.iface !== 'string') throw new CallError(400, 'settings: iface must be a string');
    settings = { theme: s.theme, iface: s.iface, netbootMode: s.netbootMode };
    return settings;
  },
  'Shell.Session': (_args, authed) => ({ mode, authRequired: !!accessPin, authenticated: authed }),
  // The mock never serves netboot or sends DHCP probes: it says so.
  'Netboot.Status': () => ({ running: false }),
  'Netboot.Machines': () => (env.MOCK_MACHINES ? JSON.parse(readFileSync(env.MOCK_MACHINES, 'utf8')) : []),
  'Netboot.Probe': () => {
    throw new CallError(501, 'the mock server does not probe for DHCP servers');
  },
  'Netboot.Start': () => {
    throw new CallError(501, 'the mock server cannot serve netboot: run onramp serve');
  },
  'Netboot.Stop': () => ({ running: false }),
  'Site.Get': () => siteView(),
  'Site.Save': (s) => saveSite(s),
  'Site.Import': (text) => {
    if (typeof text !== 'string') throw new CallError(400, 'call Site.Import: argument 1: expected a string');
    return saveSite(parseYaml(text));
  },
  'Site.Export': () => {
    if (!site) throw new CallError(422, 'no site yet');
    const copy = Object.fromEntries([...SITE_KEYS].filter((k) => k in site).map((k) => [k, structuredClone(site[k])]));
    if (copy.handoff?.omni) copy.handoff.omni.joinToken = '';
    return toYaml(copy) + '\n';
  },
  'Site.GenerateSecrets': () => {
    if (!site) throw new CallError(422, 'fill in the site first');
    const ps = siteProblems(site);
    if (ps.length) throw new CallError(422, `generate configs: ${ps[0].path}: ${ps[0].message}`);
    siteSecrets = true; // the mock holds no keys: it only remembers the answer
    broadcast('site:secrets', { generated: true, took: '0s' });
    return siteView();
  },
  'Lab.Status': () => labStatus(),
  'Lab.Up': () => {
    throw new CallError(501, 'the mock server cannot run the virtual lab: run onramp serve as root');
  },
  'Lab.Down': () => labStatus(),
  'Install.Status': () => installView(),
  'Install.Start': () => {
    throw new CallError(422, 'install: the mock server discovers no machines: run onramp serve');
  },
  'Install.Cancel': () => installView(),
  'Install.Verify': () => {
    throw new CallError(422, 'verify: the mock server has no installed node');
  },
  'Shell.Quit': (pin) => {
    if (mode !== 'kiosk') return null;
    if (pin !== adminPin) throw new CallError(403, 'wrong PIN');
    console.log('mock: Shell.Quit accepted (a real kiosk would exit now)');
    return null;
  },
};

function authed(req) {
  if (!accessPin) return true;
  const m = /(?:^|;\s*)onramp_session=([^;]+)/.exec(req.headers.cookie ?? '');
  return !!m && sessions.has(m[1]);
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(text);
}

async function body(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 1 << 20) throw new CallError(413, 'request too large');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    throw new CallError(400, 'request body is not JSON');
  }
}

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

function serveStatic(req, res) {
  const url = new URL(req.url ?? '/', 'http://x');
  let rel = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, '');
  if (rel === '/' || rel === '') rel = '/index.html';
  const file = join(dist, rel);
  if (!file.startsWith(dist)) return send(res, 403, { error: 'forbidden' });
  let target = file;
  if (!existsSync(target) || statSync(target).isDirectory()) target = join(dist, 'index.html');
  if (!existsSync(target)) {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    return res.end('frontend not built: run npm run build');
  }
  res.writeHead(200, { 'Content-Type': types[extname(target)] ?? 'application/octet-stream' });
  createReadStream(target).pipe(res);
}

function broadcast(event, data) {
  for (const s of streams) s.write(event, data);
}

function sse(req, res) {
  if (!authed(req)) return send(res, 401, { error: 'access PIN required' });
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-store',
    Connection: 'keep-alive',
  });
  const write = (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  write('hello', { version, mode });
  const timer = setInterval(() => write('ping', { t: Date.now() }), pingMs);
  const stream = { write };
  streams.add(stream);
  req.on('close', () => {
    clearInterval(timer);
    streams.delete(stream);
  });
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  try {
    if (url.pathname === '/api/events' && req.method === 'GET') return sse(req, res);
    if (url.pathname === '/api/login' && req.method === 'POST') {
      const b = await body(req);
      if (!accessPin) return send(res, 200, { ok: true });
      if (!b || b.pin !== accessPin) return send(res, 401, { error: 'wrong PIN' });
      const token = randomBytes(16).toString('hex');
      sessions.add(token);
      res.setHeader('Set-Cookie', `onramp_session=${token}; HttpOnly; SameSite=Strict; Path=/`);
      return send(res, 200, { ok: true });
    }
    const m = /^\/api\/call\/([A-Za-z]+\.[A-Za-z]+)$/.exec(url.pathname);
    if (m && req.method === 'POST') {
      const fn = services[m[1]];
      if (!fn) return send(res, 404, { error: `unknown method ${m[1]}` });
      const ok = authed(req);
      if (!ok && m[1] !== 'Shell.Session') return send(res, 401, { error: 'access PIN required' });
      const args = await body(req);
      if (!Array.isArray(args)) throw new CallError(400, 'body must be a JSON array of arguments');
      const result = m[1] === 'Shell.Session' ? fn(args, ok) : fn(...args);
      if (m[1] === 'Settings.Set') for (const s of streams) s.write('settings:changed', result);
      return send(res, 200, result ?? null);
    }
    if (url.pathname.startsWith('/api/')) return send(res, 404, { error: 'not found' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method not allowed' });
    return serveStatic(req, res);
  } catch (err) {
    const status = err instanceof CallError ? err.status : 500;
    return send(res, status, { error: err instanceof Error ? err.message : String(err) });
  }
});

server.listen(port, host, () => {
  const addr = server.address();
  const actual = addr && typeof addr === 'object' ? addr.port : port;
  // The first line is read by e2e/mock-e2e.mjs: keep its shape.
  console.log(`mock onramp serve on http://${host}:${actual} (mode ${mode}${accessPin ? ', PIN required' : ''}), dist ${dist}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.closeAllConnections?.();
    server.close(() => process.exit(0));
  });
}
