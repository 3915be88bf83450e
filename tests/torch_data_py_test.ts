/**
 * The torch trainer's window reader (`torch_engine/data.py`) against the streams the run cuts its
 * batches from: for splits that are views of a shard set (documents held out, the tail) and for
 * splits held in memory, the segment tables `effects/torch_data.ts` writes make Python read the
 * same windows as `TokenStream.read`, including windows that cross a segment or shard boundary.
 * Needs a `python3` with NumPy (not torch); skipped, with a message, without one.
 */
import * as E from "fp-ts/lib/Either.js";
import { assert, assertEquals } from "./assert.ts";
import { writeTokenFiles } from "../effects/torch_data.ts";
import {
  memoryStream,
  openShardSet,
  shardStream,
  splitByFraction,
  type TokenStream,
} from "../data/mod.ts";
import { randomDocuments, seededRandom, writeShardSetForTest } from "../data/_test_util.ts";

const TORCH_ENGINE = new URL("../torch_engine", import.meta.url).pathname;

async function findPython(): Promise<string | undefined> {
  for (const python of ["python3", "/usr/bin/python3"]) {
    try {
      const out = await new Deno.Command(python, { args: ["-c", "import numpy"], stderr: "null" })
        .output();
      if (out.success) return python;
    } catch {
      // Not installed.
    }
  }
  return undefined;
}

const PYTHON = await findPython();
if (PYTHON === undefined) {
  console.warn("torch_engine/data.py checks skipped: no python3 with NumPy");
}

const READER = `
import json, sys
sys.path.insert(0, sys.argv[1])
from data import TokenFiles, row_at
files = TokenFiles(sys.argv[2])
out = {}
for split, windows in json.load(sys.stdin).items():
    s = files.split(split)
    rows = [s.window(a, n).tolist() for a, n in windows]
    inputs, targets = row_at({"seq": 4, "starts": [windows[0][0]], "split": split}, 0, files)
    try:
        s.window(s.length - 1, 2)
        past = "read"
    except ValueError:
        past = "refused"
    out[split] = {"length": s.length, "rows": rows, "row": [inputs.tolist(), targets.tolist()], "past": past}
json.dump(out, sys.stdout)
`;

async function pythonWindows(
  dir: string,
  windows: Record<string, [number, number][]>,
): Promise<Record<string, { length: number; rows: number[][]; row: number[][]; past: string }>> {
  const child = new Deno.Command(PYTHON!, {
    args: ["-c", READER, TORCH_ENGINE, dir],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(windows)));
  await w.close();
  const out = await child.output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function read(s: TokenStream, start: number, count: number): number[] {
  const out = new Int32Array(count);
  s.read(start, count, out);
  return Array.from(out);
}

for (const vocabSize of [257, 100000]) {
  Deno.test({
    name:
      `data.py reads the windows TokenStream.read reads, from shards and from memory (vocabulary ${vocabSize})`,
    ignore: PYTHON === undefined,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "step-torch-data-" });
      try {
        const rand = seededRandom(vocabSize);
        const eot = vocabSize - 1;
        const docs = randomDocuments(150, 40, vocabSize, eot, rand);
        await writeShardSetForTest(`${dir}/shards`, docs, { vocabSize, eot, shardTokens: 300 });
        const set = await openShardSet(`${dir}/shards`)();
        assert(E.isRight(set));
        const onDisk = { tokens: shardStream(set.right), docEnds: set.right.docEnds };
        const flat = new Int32Array(set.right.manifest.tokens);
        set.right.read(0, flat.length, flat);
        const inMemory = {
          tokens: memoryStream(vocabSize > 65536 ? flat : Uint16Array.from(flat)),
          docEnds: set.right.docEnds,
        };
        const cases = [
          ["documents-shards", onDisk, { fraction: 0.2, by: "documents" as const }],
          ["tail-shards", onDisk, { fraction: 0.15, by: "tail" as const }],
          ["documents-memory", inMemory, { fraction: 0.2, by: "documents" as const }],
        ] as const;
        for (const [name, docsOf, spec] of cases) {
          const split = splitByFraction(docsOf, spec, 5);
          assert(E.isRight(split));
          const streams = { train: split.right.train, validation: split.right.validation };
          if (name.endsWith("shards")) assert(streams.train.segments!().length > 3, name);
          const out = `${dir}/${name}`;
          assert(E.isRight(await writeTokenFiles(out, streams)()));
          const windows: Record<string, [number, number][]> = {};
          for (const [s, stream] of Object.entries(streams)) {
            windows[s] = Array.from({ length: 300 }, (): [number, number] => {
              const count = 1 + Math.floor(rand() * 70);
              return [Math.floor(rand() * (stream.length - count + 1)), count];
            });
          }
          const got = await pythonWindows(out, windows);
          for (const [s, stream] of Object.entries(streams)) {
            const r = got[s]!;
            assertEquals(r.length, stream.length);
            assertEquals(r.rows, windows[s]!.map(([a, n]) => read(stream, a, n)), `${name} ${s}`);
            const [a] = windows[s]![0]!;
            const w = read(stream, a, 5);
            assertEquals(r.row, [w.slice(0, 4), w.slice(1)]);
            assertEquals(r.past, "refused");
          }
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
