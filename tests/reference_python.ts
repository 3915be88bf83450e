/**
 * The reference Python environment (`tools/reference_env.sh`): transformers, tokenizers, PEFT,
 * lm-evaluation-harness, TensorBoard and PyTorch 2.13, the tools users trust, used by tests to
 * check the project. `$STEP_REF_PYTHON` names an interpreter; else `.venv-ref/bin/python` in the
 * repository. Tests skip with {@link REFERENCE_HINT} where it is missing; CI creates it.
 *
 * @module
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** Why a reference test was skipped, and how to run it. */
export const REFERENCE_HINT =
  "needs the reference Python environment: run tools/reference_env.sh (or set STEP_REF_PYTHON)";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The interpreter that imports `modules`, or undefined (with the reason printed once). */
export async function referencePython(
  modules: readonly string[] = ["torch", "transformers"],
): Promise<string | undefined> {
  const python = Deno.env.get("STEP_REF_PYTHON") ?? path.join(REPO, ".venv-ref/bin/python");
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", modules.map((m) => `import ${m}`).join("; ")],
      stdout: "null",
      stderr: "null",
    }).output();
    if (out.success) return python;
  } catch {
    // not installed: skipped below
  }
  console.log(`skipped: ${REFERENCE_HINT} (${python} cannot import ${modules.join(", ")})`);
  return undefined;
}
