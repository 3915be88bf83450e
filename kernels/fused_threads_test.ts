import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";

interface Probe {
  readonly description: string;
  readonly threads: number;
  readonly shared: boolean;
  readonly openBlas: boolean;
  readonly losses: number[];
  readonly params: Record<string, number[]>;
  readonly leaked: number;
}

async function probe(threads: number): Promise<Probe> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_fused_threads_probe.ts", import.meta.url).pathname],
    env: { STEP_KERNEL_THREADS: String(threads) },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, `probe on ${threads} threads failed: ${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as Probe;
}

Deno.test("fused kernels on 2 threads train as on 1: same losses and weights, no tensor left", async () => {
  const one = await probe(1);
  const two = await probe(2);
  assertEquals([one.shared, one.threads], [false, 1], "one thread keeps the plain heap");
  assertEquals([two.shared, two.threads], [true, 2], "two threads put the heap on shared memory");
  assertStringIncludes(one.description, "fused wasm SIMD kernels (1 thread)");
  assertStringIncludes(two.description, "(2 threads on a shared wasm memory)");
  assertEquals([one.leaked, two.leaked], [0, 0]);
  if (!two.openBlas) console.log("OpenBLAS is not installed: attention ran its composite path");
  assert(one.losses[2]! < one.losses[0]!, `the loss falls: ${one.losses}`);
  // Elementwise and row parts compute each value as one thread does; RMSNorm's weight
  // gradient adds its parts' sums in another order, so the weights may move by rounding.
  one.losses.forEach((l, i) => {
    assert(
      Math.abs(l - two.losses[i]!) <= 1e-5 * Math.abs(l),
      `loss ${i}: ${l} vs ${two.losses[i]}`,
    );
  });
  assertEquals(Object.keys(two.params).sort(), Object.keys(one.params).sort());
  for (const [name, values] of Object.entries(one.params)) {
    const other = two.params[name]!;
    let worst = 0;
    values.forEach((v, i) => worst = Math.max(worst, Math.abs(v - other[i]!)));
    assert(worst <= 1e-5, `${name}: largest difference ${worst}`);
  }
});
