"""The GPT prior's decode loop: a Llama forward pass one new token at a time over fused weights.

At the batch sizes people sample with (16 on a CPU, a few hundred on a GPU) a decode step is memory-bound:
its cost is reading every weight once. Through transformers each layer reads seven separate `nn.Linear`
weights in (out, in) layout; on a 2-core CPU the same FLOPs run about twice as fast as three matmuls
against q/k/v fused into one (D, 3D) matrix and gate/up into one (D, 2I), in (in, out) layout (issue 13). The
fused copies are made from the live transformers weights at every `FusedLlamaDecoder(...)`, so they are never
saved and never stale after training; keys and values go to preallocated buffers, read over the filled
positions only. `GPTPrior.forward` (training, and the reference these steps are tested against) stays on
transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM


@dataclass
class FusedLayer:
    """One decoder layer's weights for `x @ W` (D: hidden size, I: MLP size)."""

    attention_norm: torch.Tensor  # (D,)
    qkv: torch.Tensor  # (D, 3D): q, k, v side by side
    out: torch.Tensor  # (D, D)
    mlp_norm: torch.Tensor  # (D,)
    gate_up: torch.Tensor  # (D, 2I): gate, up side by side
    down: torch.Tensor  # (I, D)


def fused_layer(layer) -> FusedLayer:
    """A transformers LlamaDecoderLayer → its weights fused and transposed (copies)."""
    attention, mlp = layer.self_attn, layer.mlp
    for linear in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj,
                   mlp.gate_proj, mlp.up_proj, mlp.down_proj):
        if linear.bias is not None:
            raise ValueError("the fused decode step has no biases: expected attention_bias=False, mlp_bias=False")
    return FusedLayer(
        attention_norm=layer.input_layernorm.weight.detach(),
        qkv=torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]).t().contiguous(),
        out=attention.o_proj.weight.t().contiguous(),
        mlp_norm=layer.post_attention_layernorm.weight.detach(),
        gate_up=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).t().contiguous(),
        down=mlp.down_proj.weight.t().contiguous(),
    )


class FusedLlamaDecoder:
    """Calls: token ids (B, t) → logits (B, num_logits) for the token after the last one.

    The first call (the prompt: condition, context, prefix) may hold several tokens; every later call holds one.
    Together the calls compute what `llama(all tokens so far).logits[:, -1, :num_logits]` does (tested).
    """

    def __init__(self, llama: LlamaForCausalLM, num_logits: int, batch_size: int, max_length: int):
        config = llama.config
        if config.num_key_value_heads != config.num_attention_heads:
            raise ValueError("the fused decode step expects as many key/value heads as query heads")
        model, dtype = llama.model, llama.lm_head.weight.dtype
        self.heads = config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.activation = model.layers[0].mlp.act_fn
        self.embedding = model.embed_tokens.weight.detach()  # (V, D): read, not copied
        self.layers = [fused_layer(layer) for layer in model.layers]
        self.final_norm = model.norm.weight.detach()
        self.head = llama.lm_head.weight[:num_logits].t().contiguous()  # (D, K): only the rows that are sampled
        device = self.embedding.device
        positions = torch.arange(max_length, device=device)[None]  # (1, L)
        cos, sin = model.rotary_emb(self.embedding[:1], positions)  # (1, L, head_dim) each, the model's RoPE
        self.cos, self.sin = cos[0].to(dtype), sin[0].to(dtype)
        shape = (len(self.layers), batch_size, self.heads, max_length, self.head_dim)
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        self.filled = 0

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """LlamaRMSNorm: normalised in float32, scaled in the model's dtype."""
        x32 = x.float()
        return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE on (B, H, t, d) with cos/sin (t, d), as transformers' apply_rotary_pos_emb."""
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        start, stop = self.filled, self.filled + t
        if start > 0 and t > 1:
            raise ValueError(f"{t} tokens after the first call: expected one token per call")
        if b != self.keys.shape[1]:
            raise ValueError(f"a batch of {b}: this decoder was built for {self.keys.shape[1]}")
        if stop > self.keys.shape[3]:
            raise ValueError(f"the decoder holds {self.keys.shape[3]} positions: cannot take position {stop - 1}")
        cos, sin = self.cos[start:stop], self.sin[start:stop]  # (t, d)
        x = F.embedding(input_ids, self.embedding)  # (B, t, D)
        for i, layer in enumerate(self.layers):
            qkv = (self._rms_norm(x, layer.attention_norm) @ layer.qkv).view(b, t, 3, self.heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, H, t, d) each
            self.keys[i, :, :, start:stop] = self._rotate(k, cos, sin)
            self.values[i, :, :, start:stop] = v
            # The prompt attends causally among itself; a later single token attends to everything written.
            attended = F.scaled_dot_product_attention(
                self._rotate(q, cos, sin), self.keys[i, :, :, :stop], self.values[i, :, :, :stop], is_causal=t > 1
            )  # (B, H, t, d)
            x = x + attended.transpose(1, 2).reshape(b, t, -1) @ layer.out
            gate, up = (self._rms_norm(x, layer.mlp_norm) @ layer.gate_up).chunk(2, dim=-1)  # (B, t, I) each
            x = x + (self.activation(gate) * up) @ layer.down
        self.filled = stop
        return self._rms_norm(x[:, -1], self.final_norm) @ self.head  # (B, K)
