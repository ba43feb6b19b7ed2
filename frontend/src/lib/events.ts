import type { NetbootEvent } from '../api';

const labels: Record<string, string> = {
  'dhcp.discover': 'DHCP discover',
  'dhcp.offer': 'DHCP offer sent',
  'dhcp.request': 'DHCP request',
  'dhcp.ack': 'DHCP address given',
  'dhcp.nak': 'DHCP refused',
  'dhcp.ignored': 'DHCP ignored',
  'proxydhcp.offer': 'Boot info sent (proxyDHCP)',
  'tftp.start': 'TFTP download started',
  'tftp.done': 'TFTP download done',
  'tftp.error': 'TFTP failed',
  'http.start': 'HTTP download started',
  'http.done': 'HTTP download done',
  'http.error': 'HTTP failed',
  'ipxe.script': 'iPXE script served',
  'alarm.foreign-dhcp': 'Another DHCP server seen',
  'talos.maintenance': 'Talos maintenance mode',
  'talos.event': 'Talos event',
  'talos.kmsg': 'Kernel log',
};

// talos.event: Attrs.type is the Talos message type (contract A).
const talosTypes: Record<string, string> = {
  MachineStatusEvent: 'Talos stage',
  SequenceEvent: 'Talos sequence',
  PhaseEvent: 'Talos phase',
  TaskEvent: 'Talos task',
  ServiceStateEvent: 'Talos service',
  ConfigLoadErrorEvent: 'Talos config not loaded',
  ConfigValidationErrorEvent: 'Talos config invalid',
  AddressEvent: 'Talos addresses',
};

/** A timeline entry in plain words. */
export function eventLabel(e: NetbootEvent): string {
  if (e.kind === 'talos.event') {
    const t = e.attrs?.['type'] ?? '';
    return talosTypes[t] ?? (t ? `Talos ${t.replace(/Event$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()}` : labels[e.kind]!);
  }
  return labels[e.kind] ?? e.kind.replace(/[._-]+/g, ' ');
}

// syslog priorities 0..3: emerg, alert, crit, err.
const kmsgBad = /^(0|1|2|3|emerg|alert|crit|err|error)$/i;

export function isProblem(e: NetbootEvent): boolean {
  if (e.error || /\.(error|nak)$|^alarm\./.test(e.kind)) return true;
  if (e.kind === 'talos.event') return /ErrorEvent$/.test(e.attrs?.['type'] ?? '');
  if (e.kind === 'talos.kmsg') return kmsgBad.test(e.attrs?.['priority'] ?? '');
  return false;
}

export const isKmsg = (e: NetbootEvent): boolean => e.kind === 'talos.kmsg';

/**
 * The timeline as shown: every entry except kernel messages, of which only
 * the last `keep` are shown unless `all` (they are chatty and would drown the
 * boot steps). Entries keep their order; `hidden` counts the kmsg left out.
 */
export function timelineView(
  timeline: readonly NetbootEvent[],
  all: boolean,
  keep = 3,
): { items: Array<{ e: NetbootEvent; i: number; kmsg: boolean }>; hidden: number } {
  const kmsgAt = timeline.flatMap((e, i) => (isKmsg(e) ? [i] : []));
  const shownKmsg = new Set(all ? kmsgAt : kmsgAt.slice(Math.max(0, kmsgAt.length - keep)));
  const items = timeline.flatMap((e, i) => (!isKmsg(e) || shownKmsg.has(i) ? [{ e, i, kmsg: isKmsg(e) }] : []));
  return { items, hidden: kmsgAt.length - shownKmsg.size };
}

/** Details after the label: file, size, time taken, address, explanation. */
export function eventDetail(e: NetbootEvent): string {
  const parts: string[] = [];
  if (e.file) parts.push(e.file);
  if (e.bytes) parts.push(formatBytes(e.bytes));
  if (e.durationNs) parts.push(formatDuration(e.durationNs));
  if (e.ip && e.kind.startsWith('dhcp')) parts.push(e.ip);
  if (e.detail) parts.push(e.detail);
  if (e.error) parts.push(e.error);
  return parts.join(' · ');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatDuration(ns: number): string {
  const ms = ns / 1e6;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** HH:MM:SS in the device's time zone; '' for a bad time. */
export function clock(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}
