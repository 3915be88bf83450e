/**
 * The data layer: tokenisers, document readers, the built-in corpus with a
 * known entropy, token shards on disk, train/validation splits and a resumable
 * batch stream. Plain typed arrays only; nothing here touches tensors.
 *
 * - `tokenizer`, `hf_tokenizer`: GPT-2 BPE (`r50k_base`), a byte tokeniser, and any Hugging Face
 *   `tokenizer.json` (BPE, byte fallback, Unigram); each writes its `tokenizer.json`.
 * - `sources`, `readers`: files, directories and globs of text/JSONL/Parquet.
 * - `text_file`: every input read as text the same way (regular files only, strict UTF-8).
 * - `builtin_corpus`, `entropy`: the generated default corpus, its loss floor, unigram entropy.
 * - `token_cache`, `corpus`, `split`: tokenise, load from token shards (or in memory), split
 *   off validation data as views.
 * - `stream_sources`, `shard_build`, `progress_bar`: sources streamed as pieces of documents,
 *   tokenised in parallel into token shards on disk, with a progress line.
 * - `shard_set`, `token_stream`: token shards on disk, and streams (in memory, on disk, views)
 *   that batches read window by window.
 * - `batches`: fixed-length windows, seeded shuffles per epoch, `{ epoch, cursor }` positions.
 * - `mixture`: rows drawn from weighted sources, each with its own epochs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { batchAt, batchStream, loadCorpus } from "./mod.ts";
 * const corpus = await loadCorpus({ sources: [{ builtin: { seed: 1, documents: 50 } }], tokenizer: "bytes" })();
 * if (corpus._tag === "Right") {
 *   const stream = batchStream(corpus.right.train, { batch: 4, seq: 32, seed: 1 });
 *   if (stream._tag === "Right") assert(batchAt(stream.right, stream.right.start).batch.tokens.length === 128);
 * }
 * ```
 *
 * @module
 */
export * from "./batches.ts";
export * from "./builtin_corpus.ts";
export * from "./corpus.ts";
export * from "./split.ts";
export * from "./entropy.ts";
export * from "./readers.ts";
export * from "./sources.ts";
export * from "./token_cache.ts";
export * from "./stream_sources.ts";
export * from "./shard_build.ts";
export * from "./progress_bar.ts";
export * from "./tokenizer.ts";
export * from "./instruct.ts";
export * from "./jsonl.ts";
export * from "./text_file.ts";
export * from "./alpaca.ts";
export * from "./mt_bench.ts";
export * from "./shard_set.ts";
export * from "./token_stream.ts";
export * from "./mixture.ts";
