#!/usr/bin/env node
// A stand-in for `onramp serve` implementing the web transport's contract, for
// UI development and for trying the e2e script without the Go side:
//
//   node e2e/mockserver.mjs           (after `npm run build`)
//
// Env: MOCK_HOST (127.0.0.1), MOCK_PORT (18080), MOCK_PIN (access PIN; unset =
// none), MOCK_ADMIN_PIN (kiosk exit PIN, default 1234), MOCK_MODE (web|kiosk),
// MOCK_DATADIR, MOCK_VERSION, MOCK_PING_MS (15000), MOCK_DIST (../dist).
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
  'Netboot.Machines': () => [],
  'Netboot.Probe': () => {
    throw new CallError(501, 'the mock server does not probe for DHCP servers');
  },
  'Netboot.Start': () => {
    throw new CallError(501, 'the mock server cannot serve netboot: run onramp serve');
  },
  'Netboot.Stop': () => ({ running: false }),
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
