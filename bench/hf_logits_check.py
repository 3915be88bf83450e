#!/usr/bin/env python3
"""Peer check: does an exported checkpoint compute in Hugging Face what it computes here?

Loads a directory written by `deno task ckpt export` with transformers' LlamaForCausalLM
(optionally with a PEFT LoRA adapter on top), runs the token ids stored in a logits file
written by `deno task ckpt logits`, and compares the logits element by element.

    deno task ckpt export runs/tiny-step/final out/hf
    deno task ckpt logits out/hf --tokens "1,2,3,4,5,6,7,8;9,10,11,12,13,14,15,16" --out out/hf_logits.json
    python3 bench/hf_logits_check.py out/hf out/hf_logits.json            # transformers, GPU if present
    python3 bench/hf_logits_check.py out/hf out/hf_logits.json --reference numpy   # no torch needed

With a checkpoint/ that carries ReLoRA adapters, `ckpt export` writes OUT/adapter (PEFT);
compute our logits from the checkpoint itself (`ckpt logits runs/x/checkpoint --shape ...`)
and pass `--adapter out/hf/adapter` here.

`--reference numpy` runs an independent float64 LLaMA forward pass written from the
architecture (HF layout [out, in], rotate_half RoPE, repeat_kv grouping, SiLU MLP) instead of
transformers, so the script itself can be exercised on a machine without torch.

Exit status: 0 when every logit agrees within atol + rtol·|reference|, 1 when not, 2 when
an input or a dependency is missing. `--report FILE` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import numpy as np


def fail(message: str) -> None:
    print(f"hf_logits_check: {message}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- our side


def read_ours(path: str) -> tuple[list[list[int]], np.ndarray]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    tokens = data["tokens"]
    logits = np.asarray(data["logits"], dtype=np.float32)
    if list(logits.shape) != list(data["shape"]):
        fail(f"{path}: logits have shape {list(logits.shape)}, header says {data['shape']}")
    return tokens, logits


# ---------------------------------------------------------------- transformers


def transformers_logits(hf_dir: str, adapter: str | None, tokens, device: str) -> np.ndarray:
    try:
        import torch
        from transformers import LlamaForCausalLM
    except ImportError as e:  # pragma: no cover - depends on the machine
        fail(f"transformers and torch are needed ({e}); or use --reference numpy")
    # Plain float32 matmuls on both sides: TF32 would cost ~3 decimal digits.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs = {"attn_implementation": "eager"}
    try:  # transformers ≥ 4.56 names it dtype; older versions torch_dtype
        model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, **kwargs)
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32, **kwargs)
    if adapter is not None:
        try:
            from peft import PeftModel
        except ImportError as e:  # pragma: no cover
            fail(f"peft is needed for --adapter ({e})")
        model = PeftModel.from_pretrained(model, adapter)
    model = model.to(device).eval()
    ids = torch.tensor(tokens, dtype=torch.long, device=device)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    print(f"transformers on {device}: {type(model).__name__}")
    return out.logits.float().cpu().numpy()


# ---------------------------------------------------------------- numpy reference

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": "bf16", "F64": np.float64}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        buf = raw[8 + n + begin : 8 + n + end]
        kind = DTYPES.get(info["dtype"])
        if kind is None:
            fail(f"{path}: tensor {name} has dtype {info['dtype']}")
        if kind == "bf16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32)
        else:
            values = np.frombuffer(buf, dtype=np.dtype(kind).newbyteorder("<"))
        out[name] = values.astype(np.float64).reshape(info["shape"])
    return out


def read_weights(hf_dir: str) -> dict[str, np.ndarray]:
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights: dict[str, np.ndarray] = {}
    for file in files:
        weights.update(read_safetensors(os.path.join(hf_dir, file)))
    return weights


def merge_adapter(weights: dict[str, np.ndarray], adapter: str) -> None:
    with open(os.path.join(adapter, "adapter_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    lora = read_safetensors(os.path.join(adapter, "adapter_model.safetensors"))
    prefix = "base_model.model."
    for name, a in lora.items():
        if ".lora_A." not in name:
            continue
        module = name[len(prefix) : name.index(".lora_A.")]
        b = lora[name.replace(".lora_A.", ".lora_B.")]
        weights[f"{module}.weight"] = weights[f"{module}.weight"] + scale * (b @ a)


def numpy_logits(hf_dir: str, adapter: str | None, tokens) -> np.ndarray:
    with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    w = read_weights(hf_dir)
    if adapter is not None:
        merge_adapter(w, adapter)
    h, heads = c["hidden_size"], c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    d = h // heads
    eps, theta = c.get("rms_norm_eps", 1e-6), c.get("rope_theta", 10000.0)
    group = heads // kv

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x, positions):  # x: (seq, n_heads, d)
        inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
        angles = np.outer(positions, inv)
        emb = np.concatenate([angles, angles], -1)[:, None, :]
        rotated = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], -1)
        return x * np.cos(emb) + rotated * np.sin(emb)

    out = []
    for seq in tokens:
        s = len(seq)
        x = w["model.embed_tokens.weight"][seq]
        pos = np.arange(s)
        mask = np.triu(np.full((s, s), -np.inf), 1)
        for layer in range(c["num_hidden_layers"]):
            p = lambda n: w[f"model.layers.{layer}.{n}.weight"]  # noqa: E731
            a = norm(x, p("input_layernorm"))
            q = rope((a @ p("self_attn.q_proj").T).reshape(s, heads, d), pos)
            k = rope((a @ p("self_attn.k_proj").T).reshape(s, kv, d), pos)
            v = (a @ p("self_attn.v_proj").T).reshape(s, kv, d)
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(d) + mask
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            att = np.einsum("hqk,khd->qhd", probs, v).reshape(s, h)
            x = x + att @ p("self_attn.o_proj").T
            m = norm(x, p("post_attention_layernorm"))
            gate, up = m @ p("mlp.gate_proj").T, m @ p("mlp.up_proj").T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ p("mlp.down_proj").T
        head = w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else w["lm_head.weight"]
        out.append(norm(x, w["model.norm.weight"]) @ head.T)
    print("numpy float64 reference")
    return np.stack(out)


# ---------------------------------------------------------------- compare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir", help="directory written by `deno task ckpt export`")
    ap.add_argument("logits", help="JSON written by `deno task ckpt logits`")
    ap.add_argument("--adapter", help="PEFT adapter directory to apply (e.g. HF_DIR/adapter)")
    ap.add_argument("--reference", choices=["transformers", "numpy"], default="transformers")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (transformers only)")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--report", help="write the comparison as JSON here")
    args = ap.parse_args()
    for path in (args.hf_dir, args.logits):
        if not os.path.exists(path):
            fail(f"{path}: no such file or directory")
    tokens, ours = read_ours(args.logits)
    if args.reference == "numpy":
        theirs = numpy_logits(args.hf_dir, args.adapter, tokens)
    else:
        theirs = transformers_logits(args.hf_dir, args.adapter, tokens, args.device)
    if theirs.shape != ours.shape:
        print(f"shape mismatch: ours {ours.shape}, reference {theirs.shape}")
        sys.exit(1)
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    bound = args.atol + args.rtol * np.abs(theirs)
    worst = np.unravel_index(np.argmax(diff - bound), diff.shape)
    agree = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    result = {
        "shape": list(ours.shape),
        "maxAbsDiff": float(diff.max()),
        "meanAbsDiff": float(diff.mean()),
        "maxAbsLogit": float(np.abs(theirs).max()),
        "argmaxAgreement": agree,
        "worstAt": [int(i) for i in worst],
        "atol": args.atol,
        "rtol": args.rtol,
        "reference": args.reference,
        "pass": bool((diff <= bound).all()),
    }
    print(json.dumps(result, indent=2))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    sys.exit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()
