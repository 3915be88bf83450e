/**
 * A Web Worker of the shard builder (`shard_build.ts`): loads the tokeniser its `init` message
 * names, then encodes each work item it is sent and sends the tokens back (their buffer
 * transferred, not copied). Items carry their own ids: the builder puts results back in source
 * order, whichever worker finishes first.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { describeUnknown } from "../base/mod.ts";
import type { Tokenizer } from "./tokenizer.ts";
import {
  encodeItem,
  factsOf,
  type FromWorker,
  loadTokenizerSpec,
  type ToWorker,
} from "./_shard_item.ts";

/** The worker's global scope, typed by hand: the project type-checks with the window's lib. */
interface WorkerScope {
  postMessage(message: FromWorker, transfer: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}
const scope = globalThis as unknown as WorkerScope;

let tokenizer: Tokenizer | undefined;
let wide = false;

function send(message: FromWorker, transfer: Transferable[] = []): void {
  scope.postMessage(message, transfer);
}

scope.onmessage = async (event: MessageEvent<ToWorker>) => {
  const m = event.data;
  if (m.kind === "init") {
    const loaded = await loadTokenizerSpec(m.spec)();
    if (E.isLeft(loaded)) {
      send({ kind: "unloaded", error: loaded.left });
      return;
    }
    tokenizer = loaded.right;
    wide = tokenizer.vocabSize > 65536; // as the builder decides the dtype
    send({ kind: "ready", facts: factsOf(tokenizer) });
    return;
  }
  if (tokenizer === undefined) {
    send({ kind: "failed", id: m.id, message: "the worker got work before its tokenizer" });
    return;
  }
  try {
    const out = encodeItem(tokenizer, m.item, wide);
    if (E.isLeft(out)) send({ kind: "failed", id: m.id, message: out.left });
    else {send({ kind: "encoded", id: m.id, item: out.right }, [
        out.right.tokens.buffer,
        out.right.ends.buffer,
      ]);}
  } catch (e) {
    send({ kind: "failed", id: m.id, message: describeUnknown(e) });
  }
};
