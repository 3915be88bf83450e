/**
 * What `deno task run` and `deno task data` read as a PIPELINE argument: a `.ts` module
 * exporting `pipeline` (a value, a builder returning one, or an `Either`), a stage-graph YAML/JSON
 * (`nodes:`), or a plain config YAML, which runs as standard pre-training.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import { configInvalid, describeUnknown, ioFailed, type PipelineError } from "../base/mod.ts";
import { decodeConfig, decodePipeline, type Pipeline, standardGraph } from "../pipeline/mod.ts";
import { readText } from "./_files.ts";

/** The pipeline a PIPELINE file describes, decoded and checked as a run reads it. */
export async function loadPipelineFile(file: string): Promise<E.Either<PipelineError, Pipeline>> {
  if (file.endsWith(".ts")) {
    let mod: Record<string, unknown>;
    try {
      mod = await import(new URL(file, `file://${Deno.cwd()}/`).href);
    } catch (e) {
      return E.left(ioFailed(file, `cannot import the pipeline module: ${describeUnknown(e)}`));
    }
    const exported = mod.pipeline;
    const value = typeof exported === "function" ? await (exported as () => unknown)() : exported;
    if (value === undefined) {
      return E.left(configInvalid(file, "the module does not export `pipeline`"));
    }
    // Builders return Either; a hand-written object is decoded like a YAML document.
    if (typeof value === "object" && value !== null && "_tag" in value) {
      return value as E.Either<PipelineError, Pipeline>;
    }
    return decodePipeline(value, file);
  }
  const text = await readText(file)();
  if (E.isLeft(text)) return text;
  let doc: unknown;
  try {
    doc = YAML.parse(text.right, { uniqueKeys: true });
  } catch (e) {
    return E.left(configInvalid(file, `not valid YAML: ${describeUnknown(e).split("\n")[0]}`));
  }
  // A config without `nodes:` runs as standard pre-training: one train node of full depth.
  const isGraph = typeof doc === "object" && doc !== null && "nodes" in doc;
  return isGraph
    ? decodePipeline(doc, file)
    : E.flatMap(decodeConfig(doc, file), (c) => standardGraph(c, file));
}
