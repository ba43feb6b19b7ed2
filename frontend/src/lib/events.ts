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
};

/** A timeline entry in plain words. */
export function eventLabel(e: NetbootEvent): string {
  return labels[e.kind] ?? e.kind.replace(/[._-]+/g, ' ');
}

export function isProblem(e: NetbootEvent): boolean {
  return !!e.error || /\.(error|nak)$|^alarm\./.test(e.kind);
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
