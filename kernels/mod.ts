/**
 * The tensor engine: backends, the LLaMA model over a named parameter map,
 * cross-entropy, AdamW and GaLore, training steps and memory accounting. The only part
 * of the project that imports TensorFlow.js.
 *
 * Conventions: parameters use Hugging Face names; linear weights are
 * [in, out] (x·W; HF stores [out, in]); the embedding is [vocab, hidden];
 * LoRA adapters are `<proj>.lora_A` [in, r] and `<proj>.lora_B` [r, out]
 * beside `<proj>.weight`. Every function returns tensors its caller owns
 * and frees its temporaries. The blocks in ops/ run one fused kernel per
 * direction where the active backend registers one (ops/fused_kernels.ts names them
 * and states their contracts; fused/ has the wasm ones, which `auto` uses),
 * and their composite tfjs ops elsewhere.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/lib/Either.js";
 * import { createTrainState, disposeState, initBackend, initParams, trainStep } from "./mod.ts";
 * const got = await initBackend("cpu");
 * if (E.isRight(got)) {
 *   const shape = {
 *     hidden: 8, intermediate: 16, heads: 2, kvHeads: 1, layers: 2, vocab: 11,
 *     tiedEmbeddings: false, rmsNormEps: 1e-5, ropeTheta: 10000, maxSeqLen: 16,
 *   };
 *   let state = createTrainState(shape, initParams(shape, 2, 0));
 *   const mb = { tokens: new Int32Array([1, 2, 3]), targets: new Int32Array([2, 3, 4]), batch: 1, seq: 3 };
 *   ({ state } = await trainStep(state, [mb], { lr: 1e-3 }));
 *   disposeState(state);
 * }
 * ```
 *
 * @module
 */
export * from "./backend.ts";
export * from "./params.ts";
export * from "./model.ts";
export * from "./train_state.ts";
export * from "./ops/adamw.ts";
export { ADAMW_DEFAULTS, type AdamWScalars, type AdamWStep } from "./ops/adamw_rule.ts";
export * from "./galore.ts";
export * from "./train_step.ts";
export * from "./accounted_bytes.ts";
export * from "./relora.ts";
export { embedding } from "./ops/embedding.ts";
export { linear, type LoraBranch } from "./ops/linear.ts";
export { rmsNorm, type RmsNormOptions } from "./ops/rms_norm.ts";
export { rope, type RopeTableOptions, type RopeTables, ropeTables } from "./ops/rope.ts";
export { causalAttention } from "./ops/attention.ts";
export { swiglu } from "./ops/swiglu.ts";
export { crossEntropySum } from "./ops/cross_entropy.ts";
export * from "./peak_memory.ts";
export * from "./scoring.ts";
export * from "./decode.ts";
export * from "./sampling.ts";
export * from "./generate.ts";
