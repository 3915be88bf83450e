"""A LLaMA decoder with Hugging Face's parameter names and layouts, and ReLoRA adapters.

Names are `model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, …,
`model.norm.weight`, `lm_head.weight`; linear weights are [out, in] as in `nn.Linear`, so an
HF `model.safetensors` loads as it is. An adapted projection also holds `lora_A` [r, in] and
`lora_B` [out, r] (PEFT's layouts) and computes x·Wᵀ + scale·(x·Aᵀ)·Bᵀ, as the tfjs engine's
`linear` does (`kernels/ops/linear.ts`). Conventions follow `kernels/model.ts`: RMSNorm
x·rsqrt(mean(x²) + eps)·w, RoPE with HF's rotate_half and angles computed in float64, grouped
keys and values shared by consecutive query heads, SwiGLU, an LM head tied to the embedding when
the shape says so.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


class Projection(nn.Module):
    """A bias-free linear map that may carry a LoRA branch."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(outputs, inputs))
        self.lora_A: nn.Parameter | None = None
        self.lora_B: nn.Parameter | None = None
        self.scale = 1.0

    def attach(self, rank: int, scale: float) -> None:
        outputs, inputs = self.weight.shape
        self.lora_A = nn.Parameter(torch.zeros(rank, inputs))
        self.lora_B = nn.Parameter(torch.zeros(outputs, rank))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        if self.lora_A is None or self.lora_B is None:
            return y
        return y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalised in float32 whatever autocast does around it, as HF's LlamaRMSNorm.
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, shape: dict) -> None:
        super().__init__()
        d = shape["hidden"]
        self.heads = shape["heads"]
        self.kv_heads = shape["kvHeads"]
        self.head_dim = d // self.heads
        kv = self.kv_heads * self.head_dim
        self.q_proj = Projection(d, d)
        self.k_proj = Projection(d, kv)
        self.v_proj = Projection(d, kv)
        self.o_proj = Projection(d, d)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        if x.is_cuda and hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            mask = torch.full((t, t), float("-inf"), device=x.device).triu(1)
            o = (scores + mask).softmax(-1).to(v.dtype) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, shape: dict) -> None:
        super().__init__()
        d, f = shape["hidden"], shape["intermediate"]
        self.gate_proj = Projection(d, f)
        self.up_proj = Projection(d, f)
        self.down_proj = Projection(f, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, shape: dict) -> None:
        super().__init__()
        self.self_attn = Attention(shape)
        self.mlp = Mlp(shape)
        self.input_layernorm = RMSNorm(shape["hidden"], shape["rmsNormEps"])
        self.post_attention_layernorm = RMSNorm(shape["hidden"], shape["rmsNormEps"])

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class LlamaModel(nn.Module):
    def __init__(self, shape: dict, depth: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(shape["vocab"], shape["hidden"])
        self.layers = nn.ModuleList([DecoderLayer(shape) for _ in range(depth)])
        self.norm = RMSNorm(shape["hidden"], shape["rmsNormEps"])


class Llama(nn.Module):
    """`forward(tokens, targets)` gives the summed cross-entropy over targets ≥ 0."""

    def __init__(self, shape: dict, depth: int) -> None:
        super().__init__()
        self.shape = shape
        self.model = LlamaModel(shape, depth)
        self.lm_head = None if shape["tiedEmbeddings"] else Projection(shape["hidden"], shape["vocab"])
        # `training.recompute: layers`: keep each layer's input only, run it again in backward.
        self.recompute = False
        self._rope: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def rope(self, seq: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (seq, str(device))
        if key not in self._rope:
            hd = self.shape["hidden"] // self.shape["heads"]
            i = torch.arange(hd // 2, dtype=torch.float64)
            inv = torch.pow(torch.tensor(float(self.shape["ropeTheta"]), dtype=torch.float64), -2 * i / hd)
            ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
            cos = ang.cos().float()
            sin = ang.sin().float()
            self._rope[key] = (
                torch.cat([cos, cos], -1).to(device)[None, None],
                torch.cat([sin, sin], -1).to(device)[None, None],
            )
        return self._rope[key]

    def projections(self) -> list[tuple[str, Projection]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, Projection)]

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cos, sin = self.rope(tokens.shape[1], tokens.device)
        h = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            if self.recompute and torch.is_grad_enabled():
                h = checkpoint(layer, h, cos, sin, use_reentrant=False)
            else:
                h = layer(h, cos, sin)
        h = self.model.norm(h)
        if self.lm_head is None:
            logits = F.linear(h, self.model.embed_tokens.weight)
        else:
            logits = self.lm_head(h)
        flat = targets.reshape(-1)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            torch.where(flat >= 0, flat, torch.full_like(flat, -100)),
            reduction="sum",
            ignore_index=-100,
        )
