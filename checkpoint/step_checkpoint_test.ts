import { assert, assertEquals, assertStringIncludes } from "../tests/assert.ts";
import { openSafetensors, type TensorInput, writeSafetensors } from "../store/mod.ts";
import { openStepCheckpoint, writeStepCheckpoint } from "./step_checkpoint.ts";
import { STEP_METADATA } from "./run_layout.ts";
import {
  left,
  loadAll,
  memoryView,
  randomAdapters,
  randomWeights,
  right,
  TINY,
  withTempDir,
} from "./_test_util.ts";
import type { LlamaShape } from "../base/llama_shape.ts";

function record(
  values: ReadonlyMap<string, Float32Array>,
  shapes: ReadonlyMap<string, readonly number[]>,
): Record<string, TensorInput> {
  return Object.fromEntries(
    [...values].map(([n, v]) =>
      [n, { dtype: "F32", shape: [...shapes.get(n)!], data: v }] as const
    ),
  );
}

async function writeFinal(
  dir: string,
  shape: LlamaShape,
  weights: Map<string, Float32Array>,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const view = memoryView(shape, weights);
  const shapes = new Map(view.tensors.map((t) => [t.name, t.shape]));
  right(
    await writeSafetensors(`${dir}/model.safetensors`, record(weights, shapes), STEP_METADATA)(),
  );
  // As the run directory writes it: the target shape, which may be deeper than the file.
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...shape, layers: 8 }, null, 2));
}

Deno.test("openStepCheckpoint() reads a final/ directory at the file's depth", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(TINY, 1);
    await writeFinal(`${dir}/final`, TINY, weights);
    const view = right(await openStepCheckpoint(`${dir}/final`)());
    assertEquals(view.shape, TINY);
    assertEquals(view.adapters, undefined);
    assertEquals(await loadAll(view), weights);
    view.close();
  });
});

async function writeCheckpointDir(
  dir: string,
  loraScale: number | undefined,
): Promise<Map<string, Float32Array>> {
  await Deno.mkdir(`${dir}/checkpoint`, { recursive: true });
  const weights = randomWeights(TINY, 2);
  const adapters = randomAdapters(TINY, { rank: 2, alpha: 4, layers: [0, 1], seed: 3 });
  const all = await loadAll(memoryView(TINY, weights, adapters));
  const shapes = new Map(
    [...memoryView(TINY, weights).tensors, ...adapters.tensors].map((t) => [t.name, t.shape]),
  );
  right(await writeSafetensors(`${dir}/checkpoint/model.safetensors`, record(all, shapes))());
  const meta = loraScale === undefined ? {} : { loraScale, adamStep: 3, trainable: [] };
  await Deno.writeTextFile(`${dir}/checkpoint/state.json`, JSON.stringify({ progress: {}, meta }));
  return all;
}

Deno.test("openStepCheckpoint() reads a checkpoint/ with adapters given its shape", async () => {
  await withTempDir(async (dir) => {
    const all = await writeCheckpointDir(dir, 2);
    const none = left(await openStepCheckpoint(`${dir}/checkpoint`)());
    assertStringIncludes(none.message, "--shape");
    await Deno.writeTextFile(
      `${dir}/run.yaml`,
      `model:\n  hidden: 8\n  intermediate: 12\n  heads: 2\n  kvHeads: 1\n  layers: 6\n  vocab: 11\n  maxSeqLen: 16\n`,
    );
    const view = right(
      await openStepCheckpoint(`${dir}/checkpoint`, { shapeFile: `${dir}/run.yaml` })(),
    );
    assertEquals(view.shape, TINY);
    assertEquals([view.adapters?.rank, view.adapters?.scale, view.adapters?.alpha], [2, 2, 4]);
    assertEquals(view.adapters?.layers, [0, 1]);
    assertEquals(view.adapters?.tensors.length, 2 * 7 * 2);
    assertEquals(await loadAll(view), all);
    view.close();
    // The run directory's pipeline.yaml is found without --shape.
    await Deno.copyFile(`${dir}/run.yaml`, `${dir}/pipeline.yaml`);
    right(await openStepCheckpoint(`${dir}/checkpoint`)()).close();
  });
});

Deno.test("openStepCheckpoint() needs meta.loraScale for adapters", async () => {
  await withTempDir(async (dir) => {
    await writeCheckpointDir(dir, undefined);
    await Deno.writeTextFile(`${dir}/pipeline.yaml`, JSON.stringify({ model: { ...TINY } }));
    const e = left(await openStepCheckpoint(`${dir}/checkpoint`)());
    assertEquals(e._tag, "ContentInvalid");
    assertEquals((e as { path: string }).path, `${dir}/checkpoint/state.json`);
    assertStringIncludes(e.message, "meta.loraScale");
  });
});

Deno.test("openStepCheckpoint() names a shape that disagrees with the tensors", async () => {
  await withTempDir(async (dir) => {
    await writeFinal(`${dir}/final`, TINY, randomWeights(TINY, 1));
    await Deno.writeTextFile(
      `${dir}/final/config.json`,
      JSON.stringify({ ...TINY, intermediate: 10 }),
    );
    const e = left(await openStepCheckpoint(`${dir}/final`)());
    assertStringIncludes(e.message, '"model.layers.0.mlp.gate_proj.weight" has shape [8,12]');
    await Deno.writeTextFile(`${dir}/final/config.json`, JSON.stringify({ ...TINY, hiden: 8 }));
    assertStringIncludes(
      left(await openStepCheckpoint(`${dir}/final`)()).message,
      'unknown field "hiden"',
    );
  });
});

Deno.test("writeStepCheckpoint() writes what the run directory writes", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(TINY, 4);
    assertEquals(right(await writeStepCheckpoint(memoryView(TINY, weights), dir)()), [
      "model.safetensors",
      "config.json",
    ]);
    const reader = right(await openSafetensors(`${dir}/model.safetensors`)());
    assertEquals(reader.header.metadata, STEP_METADATA);
    assert(reader.header.tensors.every(([, t]) => t.dtype === "F32"));
    reader.close();
    assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)), TINY);
    const view = right(await openStepCheckpoint(dir)());
    assertEquals(await loadAll(view), weights);
    view.close();
    const adapted = memoryView(
      TINY,
      weights,
      randomAdapters(TINY, { rank: 1, alpha: 1, layers: [0], seed: 1 }),
    );
    assertStringIncludes(
      left(await writeStepCheckpoint(adapted, `${dir}/x`)()).message,
      "merge them",
    );
  });
});
