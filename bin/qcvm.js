#!/usr/bin/env node
// Thin launcher: the real entry is the bundled dist/cli.js (built by `npm run build`,
// which `npm ci`/`npm install` run through the prepare script).
import { main } from "../dist/cli.js";
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
