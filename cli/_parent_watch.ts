/**
 * A child that dies with the process that started it. Deno has no `PR_SET_PDEATHSIG`, so the
 * parent (`deno task compare`) gives each child a stdin pipe it never writes to and never
 * closes: the kernel closes the parent's end when the parent ends, however it ends (`kill -9`
 * included), and the child's read of stdin returns end-of-file. The child then stops the way
 * SIGTERM stops it: at once, its run directory's lock freed by the OS, the checkpoint on disk
 * intact (written atomically) and its torch trainers ending when their control socket closes.
 *
 * @module
 */

/** The variable a parent sets on a child whose stdin is its death signal. */
export const EXIT_WITH_PARENT = "STEP_EXIT_WITH_PARENT";

/** What the parent passes to `Deno.Command`: the pipe and the variable that says what it means. */
export const exitWithParentSpawn = {
  stdin: "piped",
  env: { [EXIT_WITH_PARENT]: "stdin" },
} as const;

/**
 * When this process was started with {@link exitWithParentSpawn}, watches stdin and ends the
 * process (exit status 143, as after SIGTERM) once it reaches end-of-file. Otherwise does
 * nothing: stdin may be the user's terminal.
 */
export function exitWithParent(): void {
  if (Deno.env.get(EXIT_WITH_PARENT) !== "stdin") return;
  // The variable means "my stdin is the parent's pipe": not true of processes this one starts.
  Deno.env.delete(EXIT_WITH_PARENT);
  void (async () => {
    const sink = new Uint8Array(256);
    try {
      while ((await Deno.stdin.read(sink)) !== null) {
        // The parent writes nothing; anything read is ignored.
      }
    } catch {
      // A read error also means the parent's end is gone.
    }
    // 128 + SIGTERM, the status SIGTERM leaves; nobody reads it, the parent is gone. Like a
    // kill it may cut a write short: every file a run keeps is written atomically.
    Deno.exit(143);
  })();
}
