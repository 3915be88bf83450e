/**
 * The Alpaca prompt template (Stanford Alpaca's two forms, with and without `input`), the one
 * format instruction tuning trains on and MT-Bench answering prompts with. A conversation of
 * several turns (MT-Bench's second question is asked after the first answer) chains the
 * single-turn prompts, each earlier response in place, so the model sees only the layout it was
 * fine-tuned on.
 *
 * @module
 */

/** One instruction record: what Alpaca's JSON holds per example. */
export interface Instruction {
  /** The task, as the user writes it. */
  readonly instruction: string;
  /** Optional context for the instruction; empty or absent selects the shorter template. */
  readonly input?: string;
}

const WITH_INPUT =
  "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.\n\n";
const WITHOUT_INPUT = "Below is an instruction that describes a task. " +
  "Write a response that appropriately completes the request.\n\n";

/**
 * The prompt of one instruction, ending where the response begins (`### Response:\n`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { alpacaPrompt } from "./instruct.ts";
 * const p = alpacaPrompt({ instruction: "Say hi.", input: "" });
 * assert(p.endsWith("### Instruction:\nSay hi.\n\n### Response:\n"));
 * assert(!p.includes("### Input:"));
 * ```
 */
export function alpacaPrompt(x: Instruction): string {
  const input = x.input ?? "";
  return input.trim() === ""
    ? `${WITHOUT_INPUT}### Instruction:\n${x.instruction}\n\n### Response:\n`
    : `${WITH_INPUT}### Instruction:\n${x.instruction}\n\n### Input:\n${input}\n\n### Response:\n`;
}

/** A turn of a conversation: a user's instruction and, for earlier turns, the model's answer. */
export interface Turn {
  /** The user's instruction. */
  readonly instruction: string;
  /** The model's answer, for a finished turn; absent for the turn being asked. */
  readonly response?: string;
}

/** Separates a finished turn's response from the next turn's prompt. */
const TURN_SEPARATOR = "\n\n";

/**
 * The prompt for the last turn of `turns`, earlier turns with their responses in place; every
 * turn but the last must have a response.
 *
 * @throws {Error} when an earlier turn has no response (a caller bug).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { alpacaPrompt, conversationPrompt } from "./instruct.ts";
 * const one = conversationPrompt([{ instruction: "A" }]);
 * assert(one === alpacaPrompt({ instruction: "A" }));
 * const two = conversationPrompt([{ instruction: "A", response: "a" }, { instruction: "B" }]);
 * assert(two.startsWith(one + "a\n\n") && two.endsWith("### Instruction:\nB\n\n### Response:\n"));
 * ```
 */
export function conversationPrompt(turns: readonly Turn[]): string {
  let text = "";
  turns.forEach((t, i) => {
    text += alpacaPrompt({ instruction: t.instruction });
    if (i < turns.length - 1) {
      if (t.response === undefined) {
        throw new Error(`Turn ${i + 1} of ${turns.length} has no response`);
      }
      text += t.response + TURN_SEPARATOR;
    }
  });
  return text;
}
