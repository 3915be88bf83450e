"""Cross-check for data/hf_tokenizer_py_test.ts: Hugging Face `transformers` (with the Rust
`tokenizers`) encodes texts with the tokenizer of each given model folder.

Reads JSON on stdin: {"folders": [path, ...], "texts": [str, ...]}.
Writes JSON on stdout: {path: {"eos": id, "plain": [[id, ...], ...], "special": [[...], ...]}}
where "plain" is encode(text, add_special_tokens=False) and "special" the default encode.
Exits 3 when transformers is not installed (the test then skips).
"""
import json
import os
import sys

try:
    from transformers import AutoTokenizer
except ImportError:
    sys.exit(3)

# transformers and the Rust library print notices on stdout (file descriptor 1): send those to
# stderr and keep a copy of the real stdout for the JSON answer alone.
answer = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
request = json.load(sys.stdin)
out = {}
for folder in request["folders"]:
    tok = AutoTokenizer.from_pretrained(folder)
    out[folder] = {
        "eos": tok.eos_token_id,
        "plain": [tok.encode(t, add_special_tokens=False) for t in request["texts"]],
        "special": [tok.encode(t) for t in request["texts"]],
    }
json.dump(out, answer)
answer.close()
