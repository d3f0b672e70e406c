// The serial port setting: parsed once from what the profile says (`none`, `stdio`, `pty`,
// `file:PATH`, `device:PATH`) into a union, so later phases switch on its kind instead of parsing
// the string again; and its written form, for export and messages.
import { InternalError } from "./diagnostics.js";

export type Serial =
  | { kind: "none" }
  | { kind: "stdio" }
  | { kind: "pty" }
  /** A log qcvm writes (appends to). */
  | { kind: "file"; path: string }
  /** An existing FIFO or character device, opted into by name: written as is, never created. */
  | { kind: "device"; path: string }
  /** Set only by `launch --detach` for `serial: stdio` (the schema admits no `socket:`). */
  | { kind: "socket"; path: string };

/** The serial setting as written -> Serial. The schema's pattern allows exactly these forms. */
export function parseSerial(text: string): Serial {
  if (text === "none" || text === "stdio" || text === "pty") return { kind: text };
  const m = /^(file|device|socket):(.*)$/s.exec(text);
  if (m) return { kind: m[1] as "file" | "device" | "socket", path: m[2]! };
  throw new InternalError(`serial ${text} passed the schema`);
}

/** Serial -> the form a profile writes it in. */
export function serialText(s: Serial): string {
  return s.kind === "none" || s.kind === "stdio" || s.kind === "pty" ? s.kind : `${s.kind}:${s.path}`;
}
