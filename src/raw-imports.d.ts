// `import text from "./file?raw"`: a file's exact bytes as a string. esbuild's raw-text plugin
// (scripts/build.mjs) and vite (vitest) both read the suffix so; a JSON import would re-print
// numbers such as 18446744073709551615 rounded.
declare module "*?raw" {
  const text: string;
  export default text;
}
