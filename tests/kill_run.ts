/**
 * Starts `deno task run` in a child process and kills it with SIGKILL once its checkpoint
 * reaches a given point: how the resume tests interrupt a run where it would really be
 * interrupted, between two checkpoints.
 *
 * @module
 */
const RUN = new URL("../cli/run.ts", import.meta.url).pathname;

/**
 * Runs `cli/run.ts ARGS` (which must include `--out OUT`) until `OUT/checkpoint/state.json`
 * records node `nodeIndex` with at least `minStep` steps done in it, then kills it with SIGKILL.
 * Returns the checkpoint's global step, or -1 when the run never got there (within a minute).
 */
export async function killAtCheckpoint(
  args: readonly string[],
  out: string,
  at: { readonly nodeIndex: number; readonly minStep: number },
): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RUN, ...args],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let killedAt = -1;
  for (let i = 0; i < 1200 && killedAt < 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    try {
      const state = JSON.parse(await Deno.readTextFile(`${out}/checkpoint/state.json`));
      if (state.progress.nodeIndex === at.nodeIndex && state.progress.stepInNode >= at.minStep) {
        killedAt = state.progress.globalStep;
      }
    } catch {
      // Not written yet.
    }
  }
  child.kill("SIGKILL");
  await child.status;
  return killedAt;
}
