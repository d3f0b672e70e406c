// The typed options each command handler receives: what the command line said, after yargs parsed
// it and src/cli/*-commands.ts converted it (camelCase keys, defaults filled in, values coerced).
// Handlers never see yargs' argv, its kebab-case keys, or `unknown`.
import type { LaunchArgs } from "../launch/launch.js";
import type { CiFormat } from "../commands/validate-formats.js";

/** `--set path=value`, repeatable (validate, render, plan, launch, export). */
export interface SetOption {
  set?: string[];
}

/** `--root` and `--host-check`: how validate, render and plan read a profile and its bases. */
export interface ProfileReadOptions extends SetOption {
  /** `--root DIR`: where extends: bases may live. */
  root?: string;
  /** The host-check step; `--no-host-check` sets false. */
  hostCheck: boolean;
}

/** `--host` and `--capabilities`: the host and QEMU a profile is planned for. */
export interface HostOptions {
  /** Host root (a directory shaped like /, or a shipped tree resolved to its path); "/" when absent. */
  host?: string;
  /** Saved capabilities file (`qcvm doctor --save`). */
  capabilities?: string;
}

/** `--format text|json` (src/cli/options.ts formatOption): json prints one JSON document on stdout. */
export interface FormatOption {
  format: "text" | "json";
}

/** `--run-dir`: the runtime state directory (absent: src/vm/paths.ts picks the default). */
export interface RunDirOption {
  runDir?: string;
}

export type ValidateFormat = "text" | "json" | CiFormat;

export interface ValidateOptions extends ProfileReadOptions {
  /** Profiles, directories or globs (`-`: standard input). */
  files: string[];
  format: ValidateFormat;
  strict: boolean;
  fill: boolean;
}

export interface RenderOptions extends ProfileReadOptions, HostOptions {
  profile: string;
  format: "shell" | "json";
  /** Render the profile as written: no host probe, no plan (placement not checked). */
  literal: boolean;
}

export interface SchemaOptions {
  /** Print the plan schema instead of the profile schema. */
  plan: boolean;
}

export interface InitOptions extends FormatOption {
  /** The new profile's file (`.yaml` added when it has no YAML extension). */
  file: string;
  /** A profile file, or the name of one qcvm ships. */
  from?: string;
}

export interface PlanOptions extends ProfileReadOptions, HostOptions {
  profile: string;
  format: "text" | "json" | "dot" | "svg";
}

export interface DoctorOptions extends HostOptions {
  /** Profiles to check against this host and QEMU. */
  profiles: string[];
  format: "text" | "json";
  /** The QEMU binary to probe. */
  qemu: string;
  /** Save the probed capabilities to this file. */
  save?: string;
  /** Write the probed host as a tree `--host DIR` reads (src/probe/save-host.ts). */
  saveHost?: string;
}

/** launch's options are launch's own input (src/launch/launch.ts): one owner, no copy to drift. */
export type LaunchOptions = LaunchArgs;

export interface StatusOptions extends RunDirOption {
  /** One VM in detail; absent: a table of all (`qcvm list`). */
  name?: string;
  format: "text" | "json";
}

export interface StopOptions extends RunDirOption, FormatOption {
  name: string;
  /** Skip the guest powerdown. */
  force: boolean;
  /** Seconds to wait for the powerdown (>= 0). */
  timeout: number;
}

export interface StatsOptions extends RunDirOption {
  name: string;
  format: "text" | "json";
  watch: boolean;
  /** Seconds between refreshes with --watch (> 0). */
  interval: number;
}

export interface LogsOptions extends RunDirOption, FormatOption {
  name: string;
  /** List the kept logs instead of printing one. */
  list: boolean;
}

export interface ConsoleOptions extends RunDirOption, FormatOption {
  name: string;
}

export interface HelpOptions {
  /** A command; absent: the list of commands. */
  command?: string;
}

export interface CompletionOptions {
  /** absent: $SHELL's, else bash. */
  shell?: "bash" | "zsh" | "fish";
}

export interface ExportOptions extends SetOption, HostOptions, RunDirOption, FormatOption {
  profile: string;
  to: "systemd" | "libvirt";
  /** systemd: passed to qcvm launch --qemu-user. */
  qemuUser?: string;
  /** systemd: the qcvm executable the unit runs. */
  qcvm?: string;
  /** systemd: seconds the guest gets to power down (>= 0). */
  stopTimeout: number;
  /** systemd: seconds launch may take (> 0). */
  startTimeout: number;
}

export interface ImportOptions extends FormatOption {
  /** Domain XML file, or `-` for standard input. */
  domain: string;
}
