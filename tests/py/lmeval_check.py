"""The client side of tests/lm_eval_test.ts: what EleutherAI's lm-evaluation-harness computes on
a folder `deno task ckpt export` wrote, through task YAMLs that read local JSON files.

Reads one JSON request on stdin:
  {"folder": HF model folder, "include": folder of task YAMLs,
   "runs": [{"tasks": [name, ...], "limit": N}, ...], "pairs": [[context, continuation], ...]}
and loads the folder once with lm-eval's `hf` model type (`HFLM`: cpu, float32, batch size 1),
runs `lm_eval.simple_evaluate` on each run's tasks (zero-shot, the first `limit` documents, per-sample
logs kept) with `TaskManager(include_path=include)`, then scores each pair directly with
`HFLM.loglikelihood` (an over-long continuation: the harness's error is reported, not raised).

Writes {"versions", "tasks": {name: {"metrics", "items"}}, "pairs": [...], "seconds"} on stdout, where a
multiple-choice item is {"doc_id", "logprobs": [per choice], "greedy": [...], "acc", "acc_norm"},
a rolling item {"doc_id", "logprob", "words", "bytes"} (words and bytes as the task's
process_results counts them), and a pair {"logprob", "greedy"} or {"error"}. Needs no network:
the caller sets HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1.

Exit status 0 with the answer, 1 (and a traceback on stderr) when something fails.
"""

from __future__ import annotations

import json
import os
import sys
import time

STARTED = time.perf_counter()
SECONDS: dict[str, float] = {}


def lap(what: str) -> None:
    """Seconds since the previous lap, under `what` (the answer's "seconds")."""
    global STARTED
    now = time.perf_counter()
    SECONDS[what] = round(now - STARTED, 2)
    STARTED = now

# Libraries print notices on stdout: send file descriptor 1 to stderr, keep it for the answer.
ANSWER = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)


def evaluate(lm, manager, names: list[str], limit: int) -> dict:
    import lm_eval

    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=names,
        num_fewshot=0,
        limit=limit,
        task_manager=manager,
        log_samples=True,
        bootstrap_iters=0,
    )
    tasks = {}
    for name in names:
        items = []
        for s in sorted(out["samples"][name], key=lambda s: s["doc_id"]):
            resps = [r[0] for r in s["resps"]]
            if isinstance(resps[0], (list, tuple)):
                items.append(
                    {
                        "doc_id": s["doc_id"],
                        "logprobs": [float(r[0]) for r in resps],
                        "greedy": [bool(r[1]) for r in resps],
                        "acc": s.get("acc"),
                        "acc_norm": s.get("acc_norm"),
                    }
                )
            else:
                wp = s["word_perplexity"]
                bp = s["byte_perplexity"]
                items.append(
                    {
                        "doc_id": s["doc_id"],
                        "logprob": float(resps[0]),
                        "words": wp[1],
                        "bytes": bp[1],
                    }
                )
        metrics = {
            k.split(",")[0]: v
            for k, v in out["results"][name].items()
            if isinstance(v, (int, float)) and "stderr" not in k
        }
        tasks[name] = {"metrics": metrics, "items": items}
    return tasks


def main() -> None:
    request = json.load(sys.stdin)
    import lm_eval
    import torch
    import transformers
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lap("import")
    lm = HFLM(
        pretrained=request["folder"], device="cpu", dtype="float32", batch_size=1
    )
    manager = TaskManager(include_path=request["include"])
    lap("load")
    tasks = {}
    for run in request["runs"]:
        tasks.update(evaluate(lm, manager, run["tasks"], run["limit"]))
        lap(",".join(run["tasks"]))
    pairs = []

    for context, continuation in request["pairs"]:
        req = Instance(
            request_type="loglikelihood",
            doc={},
            arguments=(context, continuation),
            idx=0,
        )
        try:
            (logprob, greedy), = lm.loglikelihood([req], disable_tqdm=True)
            pairs.append({"logprob": float(logprob), "greedy": bool(greedy)})
        except AssertionError as e:
            pairs.append({"error": f"AssertionError {e}".strip()})
    lap("pairs")
    json.dump(
        {
            "versions": {
                "lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "?",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "max_length": lm.max_length,
                "prefix_token_id": lm.prefix_token_id,
            },
            "tasks": tasks,
            "pairs": pairs,
            "seconds": SECONDS,
        },
        ANSWER,
    )
    ANSWER.write("\n")
    ANSWER.flush()


if __name__ == "__main__":
    main()
