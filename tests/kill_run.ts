/**
 * Starts `deno task run` in a child process and interrupts it once its checkpoint reaches a
 * given point: how the resume tests stop a run where it would really be stopped, between two
 * checkpoints.
 *
 * @module
 */
const RUN = new URL("../cli/run.ts", import.meta.url).pathname;

/** Where the run was stopped and how it ended. */
export interface Stopped {
  /** The checkpoint's global step when it was stopped, or -1 when it never got there. */
  readonly at: number;
  readonly code: number;
  readonly stderr: string;
}

/**
 * Runs `cli/run.ts ARGS` (which must include `--out OUT`) until `OUT/checkpoint/state.json`
 * records node `nodeIndex` with at least `minStep` steps done in it (waiting at most a minute),
 * then calls `stop` (default: SIGKILL to the run itself) and waits for the run to end.
 */
export async function stopAtCheckpoint(
  args: readonly string[],
  out: string,
  at: { readonly nodeIndex: number; readonly minStep: number },
  stop: (run: Deno.ChildProcess) => void = (run) => run.kill("SIGKILL"),
): Promise<Stopped> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RUN, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let reached = -1;
  for (let i = 0; i < 1200 && reached < 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    try {
      const state = JSON.parse(await Deno.readTextFile(`${out}/checkpoint/state.json`));
      if (state.progress.nodeIndex === at.nodeIndex && state.progress.stepInNode >= at.minStep) {
        reached = state.progress.globalStep;
      }
    } catch {
      // Not written yet.
    }
  }
  if (reached >= 0) stop(child);
  else child.kill("SIGKILL");
  const status = await child.status;
  return { at: reached, code: status.code, stderr: await stderr };
}
