// Types for the generated standalone validator (scripts/gen-validator.mjs).
export interface AjvError {
  instancePath: string;
  schemaPath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}
export interface ValidateFunction {
  (data: unknown): boolean;
  errors: AjvError[] | null;
}
export declare const validate: ValidateFunction;
declare const _default: ValidateFunction;
export default _default;
