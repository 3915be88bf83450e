"""The client side of tests/hf_transformers_test.ts: what Hugging Face's own libraries compute on
the folders `deno task ckpt` writes, and a model written by `transformers` for `ckpt import`.

Reads one JSON request on stdin, {"jobs": [JOB, ...]}, runs every job in one process (importing
torch and transformers once), and writes {"versions": {...}, "results": {ID: RESULT}} on stdout.
Jobs ("id" names each; paths are absolute):

- {"kind": "logits", "folder", "tokens": [[id, ...], ...], "out", "adapter"?}:
  `AutoModelForCausalLM.from_pretrained(folder, dtype=float32)` (eager attention), with
  `PeftModel.from_pretrained(model, adapter)` on top when "adapter" is given, runs the ids and
  writes {"tokens", "shape": [batch, seq, vocab], "logits"} to "out" (the layout of
  `deno task ckpt logits`). RESULT: {"class", "shape"}; with an adapter also "loraModules" (how
  many modules PEFT wrapped) and "adapterEffect" (max |adapted − base| with the adapter disabled).
- {"kind": "tokenize", "folder", "texts": [str, ...]}: `AutoTokenizer.from_pretrained(folder)`.
  RESULT: {"class", "plain": [encode(text, add_special_tokens=False)], "special": [encode(text)],
  "bos", "eos", "file": the ids of `tokenizers.Tokenizer.from_file(folder/tokenizer.json)`
  without special tokens (the file as the Rust library reads it, whatever class
  tokenizer_config.json names)}.
- {"kind": "merge", "folder", "adapter", "ours"}: PEFT's `merge_and_unload()` of the adapter on
  the base, against the folder `deno task ckpt merge` wrote (read with `safetensors`). RESULT:
  {"tensors", "missing", "unexpected", "changed" (tensors the merge changed), "maxAbsDiff",
  "worst" (the tensor where it is, null when every tensor is equal), "maxUlps", "maxAbsWeight"}.
- {"kind": "write_model", "dir", "config": {LlamaConfig fields}, "seed", "tokenizerFrom",
  "tokens", "out"}: `LlamaForCausalLM(LlamaConfig(**config)).save_pretrained(dir)` with the random
  weights of `torch.manual_seed(seed)`, and `AutoTokenizer.from_pretrained(tokenizerFrom)
  .save_pretrained(dir)`; then the logits of the ids, written to "out" as for "logits".
  RESULT: {"files"}.

Exit status 0 with the answer, 1 (and a traceback on stderr) when a job fails.
"""

from __future__ import annotations

import json
import os
import sys

# transformers and the Rust tokenizers print notices on stdout: send file descriptor 1 to stderr
# and keep a copy of the real stdout for the JSON answer alone.
ANSWER = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
)

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_grad_enabled(False)


def load_model(folder: str):
    return AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def run_logits(model, tokens) -> torch.Tensor:
    ids = torch.tensor(tokens, dtype=torch.long)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    return out.logits.float()


def write_logits(path: str, tokens, logits: torch.Tensor) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"tokens": tokens, "shape": list(logits.shape), "logits": logits.tolist()}, f)


def logits_job(job: dict) -> dict:
    model = load_model(job["folder"])
    result: dict = {"class": type(model).__name__}
    adapter = job.get("adapter")
    if adapter is not None:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        model = PeftModel.from_pretrained(model, adapter).eval()
        result["class"] = f"{type(model).__name__}({result['class']})"
        result["loraModules"] = sum(isinstance(m, LoraLayer) for m in model.modules())
        with model.disable_adapter():
            base = run_logits(model, job["tokens"])
    logits = run_logits(model, job["tokens"])
    if adapter is not None:
        result["adapterEffect"] = float((logits - base).abs().max())
    write_logits(job["out"], job["tokens"], logits)
    result["shape"] = list(logits.shape)
    return result


def tokenize_job(job: dict) -> dict:
    tok = AutoTokenizer.from_pretrained(job["folder"])
    file = tokenizers.Tokenizer.from_file(os.path.join(job["folder"], "tokenizer.json"))
    return {
        "class": type(tok).__name__,
        "plain": [tok.encode(t, add_special_tokens=False) for t in job["texts"]],
        "special": [tok.encode(t) for t in job["texts"]],
        "bos": tok.bos_token_id,
        "eos": tok.eos_token_id,
        "file": [file.encode(t, add_special_tokens=False).ids for t in job["texts"]],
    }


def read_folder(folder: str) -> dict[str, torch.Tensor]:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out: dict[str, torch.Tensor] = {}
    for file in files:
        out.update(safetensors.torch.load_file(os.path.join(folder, file)))
    return out


def ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    """Units in the last place between float32 values (ordered as integers, signs included)."""

    def ordered(x: torch.Tensor) -> torch.Tensor:
        i = x.contiguous().view(torch.int32).to(torch.int64)
        return torch.where(i < 0, -(2**31) - i, i)

    return int((ordered(a) - ordered(b)).abs().max())


def merge_job(job: dict) -> dict:
    from peft import PeftModel

    base = load_model(job["folder"])
    before = {k: v.clone() for k, v in base.state_dict().items()}
    merged = PeftModel.from_pretrained(base, job["adapter"]).merge_and_unload()
    theirs = merged.state_dict()
    if merged.config.tie_word_embeddings:
        theirs.pop("lm_head.weight", None)
    ours = read_folder(job["ours"])
    result = {
        "tensors": len(theirs),
        "missing": sorted(set(theirs) - set(ours)),
        "unexpected": sorted(set(ours) - set(theirs)),
        "changed": 0,
        "maxAbsDiff": 0.0,
        "worst": None,
        "maxUlps": 0,
        "maxAbsWeight": 0.0,
    }
    for name in sorted(set(theirs) & set(ours)):
        t, o = theirs[name].float(), ours[name].float()
        if t.shape != o.shape:
            raise ValueError(f"{name}: transformers {list(t.shape)}, ckpt merge {list(o.shape)}")
        if not torch.equal(t, before[name]):
            result["changed"] += 1
        diff = float((t - o).abs().max())
        if diff > result["maxAbsDiff"]:
            result["maxAbsDiff"], result["worst"] = diff, name
        result["maxUlps"] = max(result["maxUlps"], ulps(t, o))
        result["maxAbsWeight"] = max(result["maxAbsWeight"], float(t.abs().max()))
    return result


def write_model_job(job: dict) -> dict:
    torch.manual_seed(job["seed"])
    model = LlamaForCausalLM(LlamaConfig(**job["config"])).to(torch.float32).eval()
    model.save_pretrained(job["dir"])
    AutoTokenizer.from_pretrained(job["tokenizerFrom"]).save_pretrained(job["dir"])
    write_logits(job["out"], job["tokens"], run_logits(model, job["tokens"]))
    return {"files": sorted(os.listdir(job["dir"]))}


JOBS = {
    "logits": logits_job,
    "tokenize": tokenize_job,
    "merge": merge_job,
    "write_model": write_model_job,
}


def main() -> None:
    request = json.load(sys.stdin)
    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
    }
    try:
        import peft

        versions["peft"] = peft.__version__
    except ImportError:
        pass
    results = {}
    for job in request["jobs"]:
        kind = job.get("kind")
        if kind not in JOBS:
            raise ValueError(f"job {job.get('id')!r}: unknown kind {kind!r}")
        results[job["id"]] = JOBS[kind](job)
    json.dump({"versions": versions, "results": results}, ANSWER)
    ANSWER.close()


if __name__ == "__main__":
    main()
