// The ids qcvm gives the objects it renders (backends, confidential objects, devices): one table, so
// the renderer's parts and extraArgs' collision check (validate/extra-args.ts) name them alike.
import { CONFIDENTIAL } from "../core/confidential.js";

/** IDs qcvm generates; never derived from profile text. */
export const RENDER_IDS = {
  backend: (node: number) => `mem${node}`,
  threadContext: (node: number) => `tc${node}`,
  sev: CONFIDENTIAL.sev.objectId,
  snp: CONFIDENTIAL["sev-snp"].objectId,
  tdx: CONFIDENTIAL.tdx.objectId,
  igvm: "igvm0",
  net: "net0",
  scsi: "scsi0",
  serial: "serial0",
  disk: (i: number) => `disk${i}`,
  pflash: (unit: 0 | 1) => `pflash${unit}`,
} as const;
