// Lint: typescript-eslint's type-checked rules over src/ and test/, plus the import fences that keep
// the pipeline's pure phases pure (no process spawning, no filesystem): only the io/ seams, probing,
// loading, launching and observing touch the machine.
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

const impure = ["execa", "child_process", "node:child_process", "fs", "node:fs", "fs/promises", "node:fs/promises"];

// The pipeline's phases are called by commands, never the other way round: what a command and a
// phase share lives in the phase (or core/), so a phase does not depend on a command's module.
const noCommands = {
  regex: "(^|/)commands/",
  message: "a pipeline phase may not import a command module: move what is shared to core/ or the phase",
};
const noIo = {
  regex: "(^|/)io/",
  message: "pure phase: the io/ seams (fsroot, exec) are for impure steps; take their results as arguments",
};

/** A no-restricted-syntax entry for `import("...")` of a module whose name matches `regex`. */
function dynamicImport(regex, message) {
  return { selector: `ImportExpression[source.value=/${regex.replaceAll("/", "\\/")}/]`, message };
}

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "src/generated/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Command handlers and loaders share async signatures whether or not a given one awaits.
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
    },
  },
  {
    // Size fences (issue 7): a source file over ~500 lines or a function over ~80 is split by
    // concern. Comments and blank lines do not count; a table is data, not a function body.
    files: ["src/**/*.ts"],
    rules: {
      "max-lines": ["error", { max: 500, skipBlankLines: true, skipComments: true }],
      "max-lines-per-function": ["error", { max: 80, skipBlankLines: true, skipComments: true, IIFEs: true }],
    },
  },
  {
    // Tests read JSON that qcvm printed (JSON.parse gives any): the unsafe-any family would only
    // force casts onto every assertion; the other type-checked rules stay on.
    files: ["test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-return": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
    },
  },
  {
    // Build, bench and fixture scripts are plain JavaScript for node: no types to check.
    files: ["**/*.mjs", "**/*.js"],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: { ...globals.node } },
  },
  {
    // Phases below the commands (see noCommands).
    files: ["src/launch/**/*.ts", "src/vm/**/*.ts", "src/plan/**/*.ts", "src/render/**/*.ts", "src/validate/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { patterns: [noCommands] }],
      // no-restricted-imports sees static imports only; import("...") is fenced here.
      "no-restricted-syntax": ["error", dynamicImport(noCommands.regex, noCommands.message)],
    },
  },
  {
    // Pure phases: same inputs, same output; their inputs arrive as arguments. (This block's
    // no-restricted-imports replaces the one above for these files, so it repeats noCommands.)
    files: [
      "src/core/**/*.ts",
      "src/normalize/**/*.ts",
      // validate/: all but host-check.ts and written-paths.ts, which stat the profile's files.
      "src/validate/schema.ts",
      "src/validate/rule-context.ts",
      "src/validate/rules*.ts",
      "src/validate/extra-args.ts",
      "src/plan/**/*.ts",
      // render/: all but files.ts, the one impure step before rendering (reads {file} blobs).
      "src/render/render.ts",
      "src/render/qemu-opts.ts",
      "src/render/process-policy.ts",
      "src/render/confidential.ts",
      "src/render/memory.ts",
      "src/render/ids.ts",
      "src/render/passed-fds.ts",
      "src/render/argv-lines.ts",
      "src/launch/prepare.ts",
      "src/launch/actions.ts",
      "src/launch/losses.ts",
      // Parsers and formatters outside the phases above: text in, data out (or the reverse).
      // Not import/check.ts: it writes the imported text to a temporary file for readProfile.
      "src/probe/capabilities.ts",
      "src/load/data.ts",
      "src/load/positions.ts",
      "src/load/set.ts",
      "src/load/set-coerce.ts",
      "src/load/yaml-fast.ts",
      "src/observe/proc-files.ts",
      "src/export/**/*.ts",
      "src/import/libvirt.ts",
      "src/import/libvirt-xml.ts",
    ],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: impure.map((name) => ({
            name,
            message: "pure phase: take the data as an argument; I/O goes through src/io/ in an impure step",
          })),
          patterns: [noCommands, noIo],
        },
      ],
      "no-restricted-syntax": [
        "error",
        dynamicImport(noCommands.regex, noCommands.message),
        dynamicImport(noIo.regex, noIo.message),
        dynamicImport(`^(${impure.join("|")})$`, "pure phase: take the data as an argument"),
      ],
    },
  },
);
