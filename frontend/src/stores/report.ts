// The Report step (Go: app/report.go): the site's record for the lab's
// quality system, and its two files (printable HTML, JSON). The report is
// read again whenever the install or handoff changes.

import { writable, type Readable } from 'svelte/store';
import { isMissingMethod, type Api, type SiteReport } from '../api';
import { downloadText } from '../lib/download';

export interface ReportStoreState {
  available: boolean | null;
  report: SiteReport | null;
  error: string | null;
  busy: 'html' | 'json' | null;
  actionError: string | null;
}

export interface ReportStore extends Readable<ReportStoreState> {
  load(): Promise<void>;
  /** Save the printable page (HTML) or the JSON record. */
  save(kind: 'html' | 'json'): Promise<boolean>;
  dispose(): void;
}

/** "stmary-lab2-site-report.html". */
export function reportName(cluster: string | undefined, kind: 'html' | 'json'): string {
  const base = (cluster ?? '').toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
  return `${base || 'onramp'}-site-report.${kind}`;
}

/** Go nil slices arrive as null: make every list a list. */
export function reportView(r: SiteReport): SiteReport {
  return {
    ...r,
    machines: r.machines ?? [],
    visit: { ...r.visit, actors: r.visit?.actors ?? [] },
    audit: { ...r.audit, trail: r.audit?.trail ?? [] },
  };
}

export function createReportStore(api: Api, save: (name: string, text: string, type: string) => void = downloadText): ReportStore {
  const s = writable<ReportStoreState>({ available: null, report: null, error: null, busy: null, actionError: null });
  let inflight: Promise<void> | null = null;
  function load(): Promise<void> {
    inflight ??= api.report
      .get()
      .then((r) => s.update((x) => ({ ...x, available: true, report: reportView(r), error: null })))
      .catch((err: unknown) => {
        if (isMissingMethod(err)) s.update((x) => ({ ...x, available: false, error: null }));
        else s.update((x) => ({ ...x, error: err instanceof Error ? err.message : String(err) }));
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }
  const offs = ['install:changed', 'handoff:changed', 'site:changed'].map((ev) => api.on(ev, () => void load()));
  let current: ReportStoreState | undefined;
  const unsub = s.subscribe((v) => (current = v));
  return {
    subscribe: s.subscribe,
    load,
    async save(kind) {
      s.update((x) => ({ ...x, busy: kind, actionError: null }));
      try {
        const text = kind === 'html' ? await api.report.html() : await api.report.json();
        save(reportName(current?.report?.site.cluster, kind), text, kind === 'html' ? 'text/html' : 'application/json');
        s.update((x) => ({ ...x, busy: null }));
        return true;
      } catch (err) {
        s.update((x) => ({ ...x, busy: null, actionError: err instanceof Error ? err.message : String(err) }));
        return false;
      }
    },
    dispose() {
      for (const off of offs) off();
      unsub();
    },
  };
}
