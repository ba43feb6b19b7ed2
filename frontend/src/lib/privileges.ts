import type { SystemInfo } from '../api';

export interface Privilege {
  name: string;
  ok: boolean;
  /** What it means for the visit, in plain words. */
  consequence: string;
}

/** Privileges the netboot services need, with what is lost without them. */
export function privileges(info: SystemInfo): Privilege[] {
  const bind = info.root || info.capNetBindService;
  const raw = info.root || info.capNetRaw;
  return [
    {
      name: 'Running as root',
      ok: info.root,
      consequence: info.root
        ? 'Full access to network ports and raw sockets.'
        : 'Not root: the capabilities below decide what Onramp can serve.',
    },
    {
      name: 'Bind ports below 1024 (CAP_NET_BIND_SERVICE)',
      ok: bind,
      consequence: bind
        ? 'DHCP (port 67), proxyDHCP (4011) and TFTP (69) can be served.'
        : 'Not root: DHCP on port 67 needs root or CAP_NET_BIND_SERVICE (so does TFTP on 69). Servers cannot netboot from this device.',
    },
    {
      name: 'Raw network access (CAP_NET_RAW)',
      ok: raw,
      consequence: raw
        ? 'Can answer DHCP clients that have no address yet and probe for a foreign DHCP server.'
        : 'Without root or CAP_NET_RAW, Onramp cannot probe the cart network for another DHCP server.',
    },
  ];
}
