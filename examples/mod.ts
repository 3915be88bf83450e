/**
 * Example stage graphs other programs reuse (the GPU device program, tests).
 * Each example is also runnable on its own: `deno task run examples/pipeline.ts`.
 *
 * @module
 */
export { tinyGqaPipeline } from "./tiny_gqa.ts";
