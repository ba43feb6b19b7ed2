// The only place in the UI that talks to Go. Components and stores use `api`;
// which transport carries the calls (Wails bindings or HTTP) is decided here.

import type { Readable } from 'svelte/store';
import type { Transport } from './transport';
import type {
  AuthState,
  ConnectionState,
  EnrollmentRequest,
  EventHandler,
  FoundServer,
  HandoffExport,
  HandoffExportRequest,
  HandoffView,
  HandoffWipeRequest,
  InstallRequest,
  InstallView,
  LabStatus,
  LabUpRequest,
  MachineView,
  NetbootStatus,
  NetInterface,
  Playbook,
  StartRequest,
  SecureBootStatus,
  EnrollMark,
  Session,
  Settings,
  Site,
  SiteReport,
  SiteView,
  SystemInfo,
  Unsubscribe,
} from './types';
import { createWailsTransport, hasWails, type WailsWindow } from './wails';
import { createWebTransport, type WebOptions, type WebTransport } from './web';

export * from './types';
export { ApiError, AuthRequiredError, isMissingMethod, toError } from './errors';

export interface Api {
  readonly transport: 'wails' | 'web';
  system: { info(): Promise<SystemInfo> };
  network: { interfaces(): Promise<NetInterface[]> };
  settings: { get(): Promise<Settings>; set(s: Settings): Promise<Settings> };
  shell: { session(): Promise<Session>; quit(pin: string): Promise<void> };
  netboot: {
    status(): Promise<NetbootStatus>;
    machines(): Promise<MachineView[]>;
    /** Ask for DHCP servers on iface (sends a DHCP discover there). */
    probe(iface: string): Promise<FoundServer[]>;
    start(req: StartRequest): Promise<NetbootStatus>;
    stop(): Promise<NetbootStatus>;
  };
  site: {
    get(): Promise<SiteView>;
    /** Saves even with problems; the answer lists them. */
    save(s: Site): Promise<SiteView>;
    /** Parse a site YAML file's content and save it. */
    import(yaml: string): Promise<SiteView>;
    /** The saved site as YAML (without the Omni join token). */
    export(): Promise<string>;
    /** Create the cluster secrets once (in memory on the Go side). */
    generateSecrets(): Promise<SiteView>;
  };
  lab: {
    status(): Promise<LabStatus>;
    up(req: LabUpRequest): Promise<LabStatus>;
    down(): Promise<LabStatus>;
  };
  install: {
    status(): Promise<InstallView>;
    /** Starts in the background; rejects only for a bad request. */
    start(req: InstallRequest): Promise<InstallView>;
    cancel(mac: string): Promise<InstallView>;
    /** Re-run verification of an installed node. */
    verify(mac: string): Promise<InstallView>;
  };
  handoff: {
    status(): Promise<HandoffView>;
    /** Write the encrypted bundle; the answer carries its ciphertext (base64) to save. */
    export(req: HandoffExportRequest): Promise<HandoffExport>;
    /** The last bundle again, with its ciphertext. */
    bundle(): Promise<HandoffExport>;
    /** Wipe the cluster secrets from this device (after export, confirmed). */
    wipe(req: HandoffWipeRequest): Promise<HandoffView>;
  };
  report: {
    get(): Promise<SiteReport>;
    /** The printable, self-contained HTML page. */
    html(): Promise<string>;
    json(): Promise<string>;
  };
  secureboot: {
    status(): Promise<SecureBootStatus>;
    /** Make the site's PK/KEK/db/PCR keys into the vault (once). */
    generateKeys(): Promise<SecureBootStatus>;
    buildEnrollmentImage(req: EnrollmentRequest): Promise<SecureBootStatus>;
    /** Make these keys' UKI/PCR fingerprints the ones every node must report. */
    expectForSite(): Promise<SecureBootStatus>;
    playbooks(): Promise<Playbook[]>;
    /** Machines the boot plan sends into key enrollment at their next netboot. */
    enrollMarks(): Promise<EnrollMark[]>;
    markEnroll(mac: string): Promise<EnrollMark>;
    unmarkEnroll(mac: string): Promise<EnrollMark>;
  };
  /** Send the access PIN (web transport); resolves when accepted. */
  login(pin: string): Promise<void>;
  /** Subscribe to a namespaced event such as `netboot:machine`. */
  on(event: string, cb: EventHandler): Unsubscribe;
  readonly connection: Readable<ConnectionState>;
  readonly auth: Readable<AuthState>;
  start(): void;
  stop(): void;
}

export function createApi(t: Transport): Api {
  const call = <T>(service: string, method: string, ...args: unknown[]): Promise<T> =>
    t.call<T>(service, method, args);
  return {
    transport: t.kind,
    system: { info: () => call<SystemInfo>('System', 'Info') },
    network: {
      interfaces: async () => (await call<NetInterface[] | null>('Network', 'Interfaces')) ?? [],
    },
    settings: {
      get: () => call<Settings>('Settings', 'Get'),
      set: (s: Settings) => call<Settings>('Settings', 'Set', s),
    },
    shell: {
      session: async () => {
        const s = await call<Session>('Shell', 'Session');
        if (s?.authRequired && !s.authenticated && 'requireAuth' in t) (t as WebTransport).requireAuth();
        return s;
      },
      quit: async (pin: string) => {
        await call<null>('Shell', 'Quit', pin);
      },
    },
    netboot: {
      status: () => call<NetbootStatus>('Netboot', 'Status'),
      machines: async () => (await call<MachineView[] | null>('Netboot', 'Machines')) ?? [],
      probe: async (iface: string) => (await call<FoundServer[] | null>('Netboot', 'Probe', iface)) ?? [],
      start: (req: StartRequest) => call<NetbootStatus>('Netboot', 'Start', req),
      stop: () => call<NetbootStatus>('Netboot', 'Stop'),
    },
    site: {
      get: async () => siteView(await call<SiteView>('Site', 'Get')),
      save: async (s: Site) => siteView(await call<SiteView>('Site', 'Save', s)),
      import: async (yaml: string) => siteView(await call<SiteView>('Site', 'Import', yaml)),
      export: () => call<string>('Site', 'Export'),
      generateSecrets: async () => siteView(await call<SiteView>('Site', 'GenerateSecrets')),
    },
    lab: {
      status: async () => labStatus(await call<LabStatus>('Lab', 'Status')),
      up: async (req: LabUpRequest) => labStatus(await call<LabStatus>('Lab', 'Up', req)),
      down: async () => labStatus(await call<LabStatus>('Lab', 'Down')),
    },
    install: {
      status: async () => installView(await call<InstallView>('Install', 'Status')),
      start: async (req: InstallRequest) => installView(await call<InstallView>('Install', 'Start', req)),
      cancel: async (mac: string) => installView(await call<InstallView>('Install', 'Cancel', mac)),
      verify: async (mac: string) => installView(await call<InstallView>('Install', 'Verify', mac)),
    },
    handoff: {
      status: async () => handoffView(await call<HandoffView>('Handoff', 'Status')),
      export: (req: HandoffExportRequest) => call<HandoffExport>('Handoff', 'Export', req),
      bundle: () => call<HandoffExport>('Handoff', 'Bundle'),
      wipe: async (req: HandoffWipeRequest) => handoffView(await call<HandoffView>('Handoff', 'Wipe', req)),
    },
    report: {
      get: () => call<SiteReport>('Report', 'Get'),
      html: () => call<string>('Report', 'HTML'),
      json: () => call<string>('Report', 'JSON'),
    },
    secureboot: {
      status: () => call<SecureBootStatus>('SecureBoot', 'Status'),
      generateKeys: () => call<SecureBootStatus>('SecureBoot', 'GenerateKeys'),
      buildEnrollmentImage: (req: EnrollmentRequest) => call<SecureBootStatus>('SecureBoot', 'BuildEnrollmentImage', req),
      expectForSite: () => call<SecureBootStatus>('SecureBoot', 'ExpectForSite'),
      enrollMarks: async () => (await call<EnrollMark[] | null>('SecureBoot', 'EnrollMarks')) ?? [],
      markEnroll: (mac: string) => call<EnrollMark>('SecureBoot', 'MarkEnroll', { mac }),
      unmarkEnroll: (mac: string) => call<EnrollMark>('SecureBoot', 'UnmarkEnroll', { mac }),
      playbooks: async () =>
        ((await call<Playbook[] | null>('SecureBoot', 'Playbooks')) ?? []).map((p) => ({ ...p, match: p.match ?? [], steps: p.steps ?? [] })),
    },
    login: (pin: string) => t.login(pin),
    on: (event, cb) => t.on(event, cb),
    connection: t.connection,
    auth: t.auth,
    start: () => t.start(),
    stop: () => t.stop(),
  };
}

/** Go nil slices arrive as null: make them empty lists. */
export function siteView(v: SiteView): SiteView {
  const out: SiteView = { ...v, problems: v.problems ?? [] };
  if (v.site) out.site = { ...v.site, machines: v.site.machines ?? [] };
  return out;
}

export function labStatus(s: LabStatus): LabStatus {
  return { ...s, machines: s.machines ?? [], prereqsMissing: s.prereqsMissing ?? [], error: s.error ?? '' };
}

/** Go nil slices arrive as null: make every list of the install view a list. */
export function installView(v: InstallView): InstallView {
  return {
    ...v,
    blockers: v.blockers ?? [],
    nodes: (v.nodes ?? []).map((n) => ({
      ...n,
      steps: n.steps ?? [],
      ...(n.evidence
        ? {
            evidence: {
              ...n.evidence,
              reasons: n.evidence.reasons ?? [],
              volumes: (n.evidence.volumes ?? []).map((vol) => ({ ...vol, keyTypes: vol.keyTypes ?? [] })),
            },
          }
        : {}),
    })),
  };
}

/** Go nil slices arrive as null: make the handoff view's lists lists. */
export function handoffView(v: HandoffView): HandoffView {
  return { ...v, blockers: v.blockers ?? [], contents: v.contents ?? [] };
}

/** Pick the transport: Wails bindings when present, else HTTP. */
export function detectTransport(w: (WailsWindow & Window) | undefined, web: WebOptions = {}): Transport {
  if (hasWails(w)) return createWailsTransport(w as WailsWindow);
  return createWebTransport({ win: w, ...web });
}

let instance: Api | undefined;

/** The app-wide api, created on first use. */
export function getApi(): Api {
  instance ??= createApi(detectTransport(typeof window === 'undefined' ? undefined : (window as WailsWindow & Window)));
  return instance;
}

/** Tests: replace the app-wide api. */
export function setApi(a: Api | undefined): void {
  instance = a;
}
