import { assert, assertEquals } from "../tests/assert.ts";
import { byteTokenizer } from "../data/mod.ts";
import { ALPACA_STOP_TEXTS, textStream } from "./generate_text.ts";

function pieces(text: string, stops: readonly string[] = []) {
  const tok = byteTokenizer();
  const s = textStream(tok, stops);
  const out: string[] = [];
  let stopped = false;
  for (const id of tok.encode(text)) {
    const r = s.push(id);
    if (r.text !== "") out.push(r.text);
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  const end = s.finish();
  if (end.rest !== "") out.push(end.rest);
  return { out, full: end.full, stopped };
}

Deno.test("textStream() never prints half a UTF-8 character", () => {
  const { out, full } = pieces("né€😀!");
  assertEquals(out, ["n", "é", "€", "😀", "!"]);
  assertEquals(full, "né€😀!");
});

Deno.test("textStream() stops at a stop text and holds back what may start one", () => {
  const r = pieces("Sure.\n\n### Instruction:\nmore", ALPACA_STOP_TEXTS);
  assert(r.stopped, "the header stops the stream");
  assertEquals(r.full, "Sure.\n\n");
  assertEquals(r.out.join(""), "Sure.\n\n");
  // "#" is held while it might begin a header, then released when it does not.
  const s = pieces("a # b ## c", ALPACA_STOP_TEXTS);
  assert(!s.stopped, "no header, no stop");
  assertEquals(s.out.join(""), "a # b ## c");
  // A tail that only looks like a header's start comes out at the end.
  assertEquals(pieces("x ### Resp", ALPACA_STOP_TEXTS).out.join(""), "x ### Resp");
});
