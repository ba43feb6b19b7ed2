// The technician's visit, in order (DESIGN.md "The visit, end to end"),
// plus the System page. `available: false` steps show a "not yet" panel.

export type RouteId =
  | 'site'
  | 'network'
  | 'discover'
  | 'secureboot'
  | 'install'
  | 'verify'
  | 'handoff'
  | 'report'
  | 'system';

export interface Step {
  id: RouteId;
  /** 1-based position in the visit; 0 for pages outside it. */
  n: number;
  title: string;
  /** One line under the heading: what the technician does here. */
  summary: string;
  available: boolean;
  /** For steps not built yet: the feature that brings them. */
  comesWith?: string;
  /** What the step will do, in plain words (shown on the "not yet" panel). */
  will?: string[];
}

export const STEPS: readonly Step[] = [
  {
    id: 'site',
    n: 1,
    title: 'Site',
    summary: 'Name the site and the cluster, list the machines, then generate the cluster secrets.',
    available: true,
  },
  {
    id: 'network',
    n: 2,
    title: 'Network',
    summary: 'Pick the network port cabled to the cart switch.',
    available: true,
  },
  {
    id: 'discover',
    n: 3,
    title: 'Discover',
    summary: 'Power on the servers; each one appears here as it netboots.',
    available: true,
  },
  {
    id: 'secureboot',
    n: 4,
    title: 'SecureBoot',
    summary: 'Enroll the keys so each server only boots signed Talos.',
    available: true,
  },
  {
    id: 'install',
    n: 5,
    title: 'Install',
    summary: "Compare each server's certificate fingerprint with its console, then install Talos with TPM-sealed disk encryption.",
    available: true,
  },
  {
    id: 'verify',
    n: 6,
    title: 'Verify',
    summary: 'Bootstrap the cluster and prove every node is locked down: SecureBoot on, expected keys, disks sealed to the TPM.',
    available: true,
  },
  {
    id: 'handoff',
    n: 7,
    title: 'Handoff',
    summary: 'Hand the cluster to fleet management; secrets leave this device.',
    available: true,
  },
  {
    id: 'report',
    n: 8,
    title: 'Report',
    summary: "The site's record for the lab's quality system.",
    available: true,
  },
  {
    id: 'system',
    n: 0,
    title: 'System',
    summary: 'This device: version, privileges, lab tools and appearance.',
    available: true,
  },
];

export const VISIT_STEPS = STEPS.filter((s) => s.n > 0);

export function stepById(id: RouteId): Step {
  const s = STEPS.find((x) => x.id === id);
  if (!s) throw new Error(`unknown step ${id}`);
  return s;
}
