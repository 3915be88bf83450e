import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import * as E from "fp-ts/lib/Either.js";
import { encodeSafetensors } from "./safetensors.ts";
import { tensorValues } from "./tensor_data.ts";
import {
  createSafetensorsWriter,
  openSafetensors,
  readSafetensors,
  writeSafetensors,
} from "./safetensors_file.ts";

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const weights = {
  "layers.0.w": {
    dtype: "F32" as const,
    shape: [2, 3],
    data: new Float32Array([1, 2, 3, 4, 5, 6]),
  },
  "layers.1.w": { dtype: "BF16" as const, shape: [2], data: new Float32Array([0.5, -8]) },
  "step": { dtype: "I64" as const, shape: [], data: new BigInt64Array([1234n]) },
};

Deno.test("openSafetensors() reads one tensor on demand from the file", async () => {
  await withTempDir(async (dir) => {
    const p = `${dir}/m.safetensors`;
    assert(E.isRight(await writeSafetensors(p, weights, { note: "x" })()));
    const opened = await openSafetensors(p)();
    assert(E.isRight(opened));
    const reader = opened.right;
    try {
      assertEquals(reader.header.metadata, { note: "x" });
      assertEquals(reader.info("layers.1.w")?.shape, [2]);
      const [a, b] = await Promise.all([reader.read("layers.1.w")(), reader.read("layers.0.w")()]);
      assert(E.isRight(a) && E.isRight(b));
      assertEquals(Array.from(tensorValues(a.right) as Float32Array), [0.5, -8]);
      assertEquals(Array.from(tensorValues(b.right) as Float32Array), [1, 2, 3, 4, 5, 6]);
      const missing = await reader.read("nope")();
      assert(E.isLeft(missing) && /No tensor "nope"/.test(missing.left.message));
    } finally {
      reader.close();
    }
  });
});

Deno.test("openSafetensors() rejects a truncated file and names it", async () => {
  await withTempDir(async (dir) => {
    const p = `${dir}/cut.safetensors`;
    const full = encodeSafetensors(weights);
    assert(E.isRight(full));
    await Deno.writeFile(p, full.right.subarray(0, 40));
    const r = await openSafetensors(p)();
    assert(E.isLeft(r));
    assertEquals(r.left.path, p);
    assert(/runs past the end of the file \(40 bytes\)/.test(r.left.message));
    const missing = await openSafetensors(`${dir}/none.safetensors`)();
    assert(E.isLeft(missing) && /Cannot open safetensors file/.test(missing.left.message));
  });
});

Deno.test("createSafetensorsWriter() accepts tensors in any order and writes the same bytes as encode", async () => {
  await withTempDir(async (dir) => {
    const p = `${dir}/s.safetensors`;
    const specs = Object.entries(weights).map(([n, t]) =>
      [n, { dtype: t.dtype, shape: t.shape }] as const
    );
    const w = await createSafetensorsWriter(p, specs, { note: "x" })();
    assert(E.isRight(w));
    assert(E.isRight(await w.right.write("step", weights.step)()));
    assert(E.isRight(await w.right.write("layers.1.w", weights["layers.1.w"])()));
    // Nothing is visible at the target before commit.
    await rejects(() => Deno.stat(p));
    assert(E.isRight(await w.right.write("layers.0.w", weights["layers.0.w"])()));
    assert(E.isRight(await w.right.commit()()));
    const expected = encodeSafetensors(weights, { note: "x" });
    assert(E.isRight(expected));
    assertEquals(Array.from(await Deno.readFile(p)), Array.from(expected.right));
    const back = await readSafetensors(p)();
    assert(E.isRight(back));
    assertEquals(Array.from(tensorValues(back.right.tensors.get("step")!) as BigInt64Array), [
      1234n,
    ]);
  });
});

Deno.test("createSafetensorsWriter() refuses a wrong shape and a commit with tensors missing", async () => {
  await withTempDir(async (dir) => {
    const p = `${dir}/s.safetensors`;
    const w = await createSafetensorsWriter(p, [["a", { dtype: "F32", shape: [2] }], ["b", {
      dtype: "U8",
      shape: [1],
    }]])();
    assert(E.isRight(w));
    const wrong = await w.right.write("a", {
      dtype: "F32",
      shape: [3],
      data: new Float32Array(3),
    })();
    assert(E.isLeft(wrong) && /planned F32 \[2\], got F32 \[3\]/.test(wrong.left.message));
    assert(
      E.isRight(
        await w.right.write("a", { dtype: "F32", shape: [2], data: new Float32Array(2) })(),
      ),
    );
    const early = await w.right.commit()();
    assert(E.isLeft(early) && /tensors never written: "b"/.test(early.left.message));
    await w.right.abort();
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assertEquals(names, []);
  });
});
