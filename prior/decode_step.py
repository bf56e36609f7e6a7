"""The GPT prior's decode step: a Llama forward pass one new token at a time over fused weights.

At the batch sizes people sample with (16 on a CPU, a few hundred on a GPU) a decode step is memory-bound:
its cost is reading every weight once. So each layer reads three matrices in (in, out) layout, q/k/v fused
into one (D, 3D) and gate/up into one (D, 2I), rather than transformers' seven `nn.Linear` weights in (out, in)
layout. The fused copies are made from the live transformers weights at every `FusedLlamaDecoder(...)`, so they
are never saved and never stale after training; keys and values go to preallocated buffers, read over the
filled positions only. `GPTPrior.forward` (training, and the reference these steps are tested against) stays
on transformers.

`compile_decoder` compiles the one-token step. On a GPU a decode step at these sizes is bound by kernel
launches, not bytes: `static=True` gives it fixed shapes (the position is a tensor, the cache is written by
index and read whole under a mask), compiled into one graph replayed as a CUDA graph (`mode="reduce-overhead"`).
On a CPU the bytes are the cost, so the compiled step keeps reading the filled positions only (the length is a
symbolic int) and inductor fuses the small ops around the matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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
    """A transformers LlamaDecoderLayer → its weights fused and transposed (copies; the norms are copied too, so
    that `FusedLlamaDecoder.load_weights` can refresh every tensor in place)."""
    attention, mlp = layer.self_attn, layer.mlp
    for linear in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj,
                   mlp.gate_proj, mlp.up_proj, mlp.down_proj):
        if linear.bias is not None:
            raise ValueError("the fused decode step has no biases: expected attention_bias=False, mlp_bias=False")
    return FusedLayer(
        attention_norm=layer.input_layernorm.weight.detach().clone(),
        qkv=torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]).t().contiguous(),
        out=attention.o_proj.weight.t().contiguous(),
        mlp_norm=layer.post_attention_layernorm.weight.detach().clone(),
        gate_up=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).t().contiguous(),
        down=mlp.down_proj.weight.t().contiguous(),
    )


class FusedLlamaDecoder:
    """Calls: token ids (B, t) → logits (B, num_logits) for the token after the last one.

    The first call (the prompt: condition, context, prefix) may hold several tokens; every later call holds one.
    Together the calls compute what `llama(all tokens so far).logits[:, -1, :num_logits]` does (tested).
    With `static=True` the one-token calls go through `static_step` (fixed shapes; what `compile_decoder`
    compiles); the same logits within float tolerance (tested).
    """

    def __init__(self, llama: LlamaForCausalLM, num_logits: int, batch_size: int, max_length: int,
                 static: bool = False):
        config = llama.config
        if config.num_key_value_heads != config.num_attention_heads:
            raise ValueError("the fused decode step expects as many key/value heads as query heads")
        model, dtype = llama.model, llama.lm_head.weight.dtype
        self.num_logits = num_logits
        self.heads = config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.activation = model.layers[0].mlp.act_fn
        self.embedding = model.embed_tokens.weight.detach().clone()  # (V, D)
        self.layers = [fused_layer(layer) for layer in model.layers]
        self.final_norm = model.norm.weight.detach().clone()
        self.head = llama.lm_head.weight[:num_logits].t().contiguous()  # (D, K): only the rows that are sampled
        device = self.embedding.device
        positions = torch.arange(max_length, device=device)[None]  # (1, L)
        cos, sin = model.rotary_emb(self.embedding[:1], positions)  # (1, L, head_dim) each, the model's RoPE
        self.cos, self.sin = cos[0].to(dtype), sin[0].to(dtype)
        shape = (batch_size, self.heads, max_length, self.head_dim)
        # The static step reads the unwritten positions too (masked): they must be finite, so zeros there. One
        # tensor per layer, not one (layers, ...) tensor: a compiled step that writes into a view of a graph input
        # copies the whole input (every layer's cache) at each write, where a write into a whole input is in place.
        allocate = torch.zeros if static else torch.empty
        self.keys = [allocate(shape, dtype=dtype, device=device) for _ in self.layers]  # (B, H, L, d) each
        self.values = [allocate(shape, dtype=dtype, device=device) for _ in self.layers]
        self.batch_size, self.max_length = batch_size, max_length
        self.filled = 0
        self.static = static
        # Static mode: the next position as a tensor (1,) and the cache positions (L,) it masks against.
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.cache_positions = torch.arange(max_length, device=device)
        # compile_decoder replaces it with a compiled step: static_step (input_ids, position) when static,
        # _dynamic_step (input_ids, stop) otherwise.
        self.one_token_step = self.static_step if static else self._dynamic_step
        self.compiled = False

    def weights(self) -> list[torch.Tensor]:
        """Every weight tensor the steps read, in a fixed order (the copies made from the model)."""
        per_layer = [getattr(layer, field.name) for layer in self.layers for field in fields(layer)]
        return [self.embedding, self.final_norm, self.head, *per_layer]

    def load_weights(self, llama: LlamaForCausalLM) -> None:
        """Refresh every fused weight in place from the live model (a compiled decoder keeps its addresses, so
        its graph is replayed rather than recorded again) and empty the cache."""
        fresh = FusedLlamaDecoder(llama, self.num_logits, batch_size=1, max_length=1)
        for mine, new in zip(self.weights(), fresh.weights(), strict=True):
            mine.copy_(new)
        self.reset()

    def reset(self) -> None:
        """Empty the cache for a new batch of sequences (the buffers stay where they are)."""
        self.filled = 0
        self.position.zero_()

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """LlamaRMSNorm: normalised in float32, scaled in the model's dtype."""
        x32 = x.float()
        return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE on (B, H, t, d) with cos/sin (t, d), as transformers' apply_rotary_pos_emb."""
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    def _mlp(self, x: torch.Tensor, layer: FusedLayer) -> torch.Tensor:
        gate, up = (self._rms_norm(x, layer.mlp_norm) @ layer.gate_up).chunk(2, dim=-1)  # (B, t, I) each
        return x + (self.activation(gate) * up) @ layer.down

    def _qkv(self, x: torch.Tensor, layer: FusedLayer, cos: torch.Tensor, sin: torch.Tensor):
        """(B, t, D) → rotated q, rotated k and v, (B, H, t, d) each."""
        b, t, _ = x.shape
        qkv = (self._rms_norm(x, layer.attention_norm) @ layer.qkv).view(b, t, 3, self.heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, t, d)
        q, k = self._rotate(qkv[:2], cos, sin)  # q and k in one pass: half the small ops per layer
        return q, k, qkv[2]

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        start, stop = self.filled, self.filled + t
        if start > 0 and t > 1:
            raise ValueError(f"{t} tokens after the first call: expected one token per call")
        if b != self.batch_size:
            raise ValueError(f"a batch of {b}: this decoder was built for {self.batch_size}")
        if stop > self.max_length:
            raise ValueError(f"the decoder holds {self.max_length} positions: cannot take position {stop - 1}")
        if start == 0:  # the prompt
            logits = self._dynamic_step(input_ids, stop)
        elif self.static:
            if self.compiled:  # the last step's logits were consumed: CUDA graphs may overwrite their memory
                torch.compiler.cudagraph_mark_step_begin()
            logits = self.one_token_step(input_ids, self.position)
        else:
            logits = self.one_token_step(input_ids, stop)
        self.filled = stop
        if self.static:
            self.position.fill_(stop)
        return logits

    def _dynamic_step(self, input_ids: torch.Tensor, stop: int) -> torch.Tensor:
        """Tokens (B, t) at positions [stop - t, stop) → logits (B, K), attending over the filled positions only.
        (Only `stop` is passed: compiled, an int argument of 0 or 1 gets a graph of its own, and a one-token
        step's stop is always 2 or more.)"""
        b, t = input_ids.shape
        start = stop - t
        cos, sin = self.cos[start:stop], self.sin[start:stop]  # (t, d)
        x = F.embedding(input_ids, self.embedding)  # (B, t, D)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(x, layer, cos, sin)
            self.keys[i][:, :, start:stop] = k
            self.values[i][:, :, start:stop] = v
            # The prompt attends causally among itself; a later single token attends to everything written.
            attended = self._attend(q, self.keys[i], self.values[i], stop)  # (B, H, t, d)
            x = self._mlp(x + attended.transpose(1, 2).reshape(b, t, -1) @ layer.out, layer)
        return self._rms_norm(x[:, -1], self.final_norm) @ self.head  # (B, K)

    @staticmethod
    def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, stop: int) -> torch.Tensor:
        """Causal attention of q (B, H, t, d) over a layer's cache (B, H, L, d), its first `stop` positions. One
        query row goes through two batched matmuls, faster on a CPU than SDPA's flash kernel for a single query."""
        if q.shape[2] > 1:
            return F.scaled_dot_product_attention(q, keys[:, :, :stop], values[:, :, :stop], is_causal=True)
        # bmm over (B*H, L, d) views of the whole cache, sliced to the filled positions.
        b, h, _, d = q.shape
        keys, values = keys.view(b * h, -1, d)[:, :stop], values.view(b * h, -1, d)[:, :stop]
        scores = torch.bmm((q * d**-0.5).view(b * h, 1, d), keys.transpose(1, 2))  # (B*H, 1, stop)
        return torch.bmm(torch.softmax(scores, dim=-1), values).view(b, h, 1, d)

    @torch.no_grad()
    def static_step(self, input_ids: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One token (B, 1) at `position` (1,) → logits (B, K), with every shape independent of the position:
        RoPE and the cache are indexed by the tensor, attention reads the whole cache (L positions) under a
        mask of the written ones. Reads up to twice the cache bytes of the dynamic step on average, which is
        why only the compiled path uses it."""
        b = input_ids.shape[0]
        cos, sin = self.cos.index_select(0, position), self.sin.index_select(0, position)  # (1, d)
        mask = (self.cache_positions <= position)[None]  # (1, L): True where written, this position included
        x = F.embedding(input_ids, self.embedding)  # (B, 1, D)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(x, layer, cos, sin)
            self.keys[i].index_copy_(2, position, k)
            self.values[i].index_copy_(2, position, v)
            attended = F.scaled_dot_product_attention(q, self.keys[i], self.values[i], attn_mask=mask)  # (B, H, 1, d)
            x = self._mlp(x + attended.transpose(1, 2).reshape(b, 1, -1) @ layer.out, layer)
        return self._rms_norm(x[:, -1], self.final_norm) @ self.head  # (B, K)


def compile_decoder(decoder: FusedLlamaDecoder) -> FusedLlamaDecoder:
    """Compile a decoder's one-token step. Static: one graph of fixed shapes, on CUDA with
    `mode="reduce-overhead"` (CUDA graphs: a step is replayed without launching its ~10 kernels per layer from
    Python). Not static (for a CPU): the step over the filled positions, batch and length symbolic (four graphs
    in all for every batch size and position on torch 2.14: batch 1 and the rest, each with one more for a
    single position; dynamo allows 8 per function, shared by all decoders). Every tensor the step reads
    (cache, position, fused weights, RoPE tables) is marked as a fixed address, so the graph writes the cache in
    place, nothing is copied in before a call, and a decoder refreshed by `load_weights` reuses its graphs."""
    for tensor in [*decoder.keys, *decoder.values, decoder.position, decoder.cache_positions, decoder.cos, decoder.sin,
                   *decoder.weights()]:
        torch._dynamo.mark_static_address(tensor)
    if decoder.static:
        mode = "reduce-overhead" if decoder.position.is_cuda else None
        decoder.one_token_step = torch.compile(decoder.static_step, mode=mode, fullgraph=True, dynamic=False)
    else:
        # dynamic=True: batch and length symbolic from the first call (automatic dynamic would compile a
        # graph per batch size first, and run out of dynamo's 8 after three).
        decoder.one_token_step = torch.compile(decoder._dynamic_step, fullgraph=True, dynamic=True)
    decoder.compiled = True
    return decoder
