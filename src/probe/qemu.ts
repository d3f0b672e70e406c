// Placeholder: QEMU capability probe over QMP, saved/loaded capability files.
import type { QemuCapabilities } from "../types.js";
import { builtinCapabilities } from "../capabilities.js";

export async function probeQemu(binary: string): Promise<QemuCapabilities> {
  return { ...builtinCapabilities("7.2"), binary };
}

export function loadCapabilities(file: string): QemuCapabilities {
  throw new Error(`not implemented: ${file}`);
}
