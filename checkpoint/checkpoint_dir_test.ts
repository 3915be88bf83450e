import * as TE from "fp-ts/lib/TaskEither.js";
import { assertEquals, assertStringIncludes } from "../tests/assert.ts";
import {
  ADAPTER_DIR,
  openCheckpoint,
  writeCheckpoint,
  type WriteCheckpointOptions,
} from "./checkpoint_dir.ts";
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
import { mergeAdapters } from "./transforms.ts";

const HF: WriteCheckpointOptions = {
  format: "hf",
  dtype: "float32",
  maxShardBytes: 5e9,
  adapters: "separate",
  baseModel: "base",
  replace: false,
};

Deno.test("writeCheckpoint() and openCheckpoint() recognise both formats", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(TINY, 1);
    right(await writeCheckpoint(memoryView(TINY, weights), `${dir}/hf`, HF)());
    right(
      await writeCheckpoint(memoryView(TINY, weights), `${dir}/step`, { ...HF, format: "step" })(),
    );
    for (const [sub, format] of [["hf", "hf"], ["step", "step"]] as const) {
      const opened = right(await openCheckpoint(`${dir}/${sub}`)());
      assertEquals(opened.format, format);
      assertEquals(await loadAll(opened.view), weights);
      opened.view.close();
    }
    await Deno.mkdir(`${dir}/run/final`, { recursive: true });
    assertStringIncludes(
      left(await openCheckpoint(`${dir}/run`)()).message,
      `try ${dir}/run/final`,
    );
  });
});

Deno.test("writeCheckpoint() writes adapters as PEFT beside the base, or merges them", async () => {
  await withTempDir(async (dir) => {
    const adapters = randomAdapters(TINY, { rank: 2, alpha: 2, layers: [2], seed: 1 });
    const view = memoryView(TINY, randomWeights(TINY, 2), adapters);
    const saved = right(await writeCheckpoint(view, `${dir}/sep`, HF)());
    assertEquals(saved.files, [
      "model.safetensors",
      "config.json",
      `${ADAPTER_DIR}/adapter_config.json`,
      `${ADAPTER_DIR}/adapter_model.safetensors`,
    ]);
    const merged = right(
      await writeCheckpoint(view, `${dir}/merged`, { ...HF, adapters: "merge" })(),
    );
    assertEquals(merged.files, ["model.safetensors", "config.json"]);
    const back = right(await openCheckpoint(`${dir}/merged`)());
    assertEquals(await loadAll(back.view), await loadAll(mergeAdapters(view)));
    back.view.close();
  });
});

Deno.test("writeCheckpoint() refuses to replace unless asked, and leaves nothing on failure", async () => {
  await withTempDir(async (dir) => {
    const view = memoryView(TINY, randomWeights(TINY, 3));
    right(await writeCheckpoint(view, `${dir}/out`, HF)());
    const e = left(await writeCheckpoint(view, `${dir}/out`, HF)());
    assertEquals(e._tag, "ConfigInvalid");
    assertStringIncludes(e.message, "--force");
    const broken = {
      ...view,
      tensors: view.tensors.map((t, i) =>
        i === 7
          ? {
            ...t,
            load: () => TE.left({ _tag: "IoFailed" as const, path: "x", message: "disk gone" }),
          }
          : t
      ),
    };
    assertEquals(
      left(await writeCheckpoint(broken, `${dir}/out`, { ...HF, replace: true })()).message,
      "disk gone",
    );
    assertEquals(left(await writeCheckpoint(broken, `${dir}/new`, HF)()).message, "disk gone");
    // The old output is intact, the new one never appeared, no temporaries remain.
    assertEquals([...Deno.readDirSync(dir)].map((d) => d.name), ["out"]);
    const still = right(await openCheckpoint(`${dir}/out`)());
    assertEquals(await loadAll(still.view), await loadAll(view));
    still.view.close();
  });
});

Deno.test("writeCheckpoint() loads one tensor at a time, in state-dict order", async () => {
  await withTempDir(async (dir) => {
    const view = memoryView(TINY, randomWeights(TINY, 4));
    let live = 0;
    let most = 0;
    const order: string[] = [];
    const tracked = {
      ...view,
      tensors: view.tensors.map((t) => ({
        ...t,
        load: () => async () => {
          live++;
          most = Math.max(most, live);
          order.push(t.name);
          await new Promise((resolve) => setTimeout(resolve, 1));
          const v = await t.load()();
          live--;
          return v;
        },
      })),
    };
    right(await writeCheckpoint(tracked, `${dir}/hf`, { ...HF, maxShardBytes: 2000 })());
    assertEquals(most, 1);
    assertEquals(order, view.tensors.map((t) => t.name));
  });
});
