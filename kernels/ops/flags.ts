/**
 * Named booleans for tfjs's positional flags (matMul's transposes, keepDims).
 *
 * @module
 */

/** matMul operand used as stored. */
export const PLAIN = false;
/** matMul operand used transposed. */
export const TRANSPOSED = true;
/** Reductions keep the reduced axis with size 1. */
export const KEEP_DIMS = true;
