// Shapes of the Go services' JSON. Keep in step with app/ (Go side).

export type Mode = 'desktop' | 'kiosk' | 'web';

export interface LabPrereq {
  name: string;
  present: boolean;
  path: string;
  hint: string;
}

export interface SystemInfo {
  version: string;
  commit: string;
  goVersion: string;
  machineryVersion: string;
  dataDir: string;
  mode: Mode;
  root: boolean;
  capNetBindService: boolean;
  capNetRaw: boolean;
  labPrereqs: LabPrereq[];
}

export interface NetInterface {
  name: string;
  mac: string;
  addrs: string[];
  up: boolean;
  mtu: number;
  wireless: boolean;
  loopback: boolean;
  virtual: boolean;
  cartHint: boolean;
  hint: string;
  /** Link detected (cable in, switch on); absent from older servers. */
  carrier?: boolean;
  /** The host's default route leaves here: likely the site network. */
  defaultRoute?: boolean;
  /** The virtual lab's network (QEMU machines), not a host NIC. */
  lab?: boolean;
}

/** Netboot.Status: whether the boot services run, and how. */
export interface NetbootStatus {
  running: boolean;
  iface?: string;
  /** Requested: auto | isolated | proxy. */
  mode?: string;
  /** Decided: isolated | proxy. */
  effective?: string;
  startedAt?: string;
  /** Why the services stopped, in plain words. */
  error?: string;
}

export interface StartRequest {
  iface: string;
  mode: NetbootMode;
  allowForeign: boolean;
}

/** A DHCP server that answered Netboot.Probe. */
export interface FoundServer {
  serverId: string;
  offeredIp?: string;
  bootFile?: string;
  proxy: boolean;
  summary: string;
}

/** One step on a machine's timeline (netboot.Event). */
export interface NetbootEvent {
  time: string;
  kind: string;
  mac?: string;
  uuid?: string;
  arch?: string;
  ip?: string;
  file?: string;
  bytes?: number;
  durationNs?: number;
  iface?: string;
  detail?: string;
  error?: string;
}

export type MachineStage = 'dhcp' | 'tftp' | 'http' | 'ignored' | 'error';

/** One machine seen on the cart network, with its timeline. */
export interface MachineView {
  mac: string;
  uuid?: string;
  arch?: string;
  ip?: string;
  stage: MachineStage | string;
  problem?: string;
  firstSeen: string;
  lastSeen: string;
  timeline: NetbootEvent[] | null;
}

export type Theme = 'system' | 'light' | 'dark';
export type NetbootMode = 'auto' | 'isolated' | 'proxy';

export interface Settings {
  theme: Theme;
  iface: string;
  netbootMode: NetbootMode;
}

export interface Session {
  mode: Mode;
  authRequired: boolean;
  authenticated: boolean;
}

/** State of the live link to the Go side, for the indicator in the frame. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline';

/** Whether the web transport needs the access PIN before it can go on. */
export type AuthState = 'unknown' | 'ok' | 'required';

export type EventHandler = (data: unknown) => void;
export type Unsubscribe = () => void;
