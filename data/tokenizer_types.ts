/**
 * What every tokeniser offers, shared by the built-in ones (`tokenizer.ts`) and the Hugging Face
 * `tokenizer.json` loader (`hf_tokenizer.ts`); `tokenizer.ts` re-exports it.
 *
 * @module
 */

/** `"bytes"`, `"gpt2"`, or a path to a `tokenizer.json` or to a folder holding one. */
export type TokenizerSpec = string;

/** The two files that make a model folder's tokeniser complete for Hugging Face loaders. */
export interface HfTokenizerFiles {
  /** The `tokenizer.json` text (the tokeniser itself: model, pre-tokeniser, added tokens). */
  readonly "tokenizer.json": string;
  /** The `tokenizer_config.json` text (EOS/BOS tokens, whether BOS is prepended). */
  readonly "tokenizer_config.json": string;
}

/** What every tokeniser offers. Ids are small non-negative integers below `vocabSize`. */
export interface Tokenizer {
  /**
   * Stable name, part of the token-cache key: `"bytes"`, `"gpt2-r50k_base"`, or for a
   * `tokenizer.json` its folder's name and the SHA-256 of the file.
   */
  readonly name: string;
  /** Number of ids: every id is below it (largest id + 1, added tokens included). */
  readonly vocabSize: number;
  /** The end-of-text id placed after every document (the tokeniser config's `eos_token`). */
  readonly eot: number;
  /** The id put before every document, present when the tokeniser's config prepends BOS. */
  readonly bos?: number;
  /**
   * What loads this tokeniser again elsewhere (a tokenising worker): `"bytes"`, `"gpt2"`, or the
   * absolute path it was read from; absent for one built from texts in memory.
   */
  readonly spec?: TokenizerSpec;
  /** Ids of `text`, with no BOS/EOS added; special tokens in the text as HF treats them. */
  encode(text: string): Int32Array;
  /** Text of the ids; special ids appear as their text (`eot` as e.g. `<|endoftext|>`). */
  decode(ids: ArrayLike<number>): string;
  /** `tokenizer.json` and `tokenizer_config.json` texts: what makes a model folder complete for HF. */
  hfFiles(): HfTokenizerFiles;
}

/** The text GPT-2 prints for its end-of-text id; the byte tokeniser uses the same. */
export const EOT_TEXT = "<|endoftext|>";
