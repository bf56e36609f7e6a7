"""GPT prior over code grids: a Llama-style decoder from `transformers` (rotary positions, RMSNorm, SwiGLU,
SDPA attention) reading the grid in raster order after one condition token.

Vocabulary: codes [0, K), class tokens [K, K + C), and one null token K + C, which is the condition of
unconditional models and the 'no class' token of classifier-free guidance. Only the K code logits are
ever returned or sampled.

A bottom-level prior of a two-level (VQ-VAE-2) tokenizer reads the top grid first: the sequence is
[condition, top codes (T of them, their own tokens [K + C + 1, K + C + 1 + K_t)), bottom codes], so every bottom
cell attends to every top code and to the bottom cells before it. A prefix rather than cross-attention keeps
the model an unchanged `LlamaForCausalLM` (its KV cache, SDPA and sampler serve as they are) at the cost of
T more positions, 1/4 of the bottom grid's at the usual 2x coarser top.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from .decode_step import FusedLlamaDecoder, compile_decoder
from .files import PriorCodesConfig, PriorFiles
from .rotary import POSITIONS, rotary_table
from .sampling import check_codes, check_labels, context_grids, sample_grids

# Size presets as plain data (LlamaGen's GPT_models); "base" is LlamaGen's GPT-B scale (~100M parameters).
GPT_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4),
    "small": dict(hidden_size=256, num_layers=6, num_heads=8),
    "medium": dict(hidden_size=512, num_layers=8, num_heads=8),
    "base": dict(hidden_size=768, num_layers=12, num_heads=12),
}


@dataclass
class GPTPriorConfig(PriorCodesConfig):
    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 8
    intermediate_size: int | None = None  # SwiGLU width; default ≈ 8/3 · hidden, rounded up to 64
    dropout: float = 0.0  # on the input embeddings (LlamaGen's token dropout) and the attention weights
    rope_theta: float = 10_000.0
    # Rotary positions: "sequence" (transformers' 1-D RoPE over the sequence) or "grid" (LlamaGen's 2-D RoPE:
    # half of each head's pairs turn with the code's row, half with its column; prior/rotary.py).
    positions: str = "sequence"
    zero_condition_rope: bool = False  # LlamaGen: the condition token's query and key are zeroed by its RoPE row
    rms_norm_eps: float = 1e-6  # transformers' Llama default; LlamaGen's is 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions={self.positions!r}: expected one of {POSITIONS}")
        if self.positions == "grid" and (self.hidden_size // self.num_heads) % 4:
            raise ValueError(f"positions='grid' needs a head size divisible by 4; hidden_size={self.hidden_size} "
                             f"over num_heads={self.num_heads} gives {self.hidden_size // self.num_heads}")
        if self.positions == "grid" and self.context_grid_shape:
            raise ValueError("positions='grid' places the codes of one grid; a bottom-level prior (with a top grid "
                             "as context) takes positions='sequence'")
        if self.intermediate_size is None:
            self.intermediate_size = -(-int(self.hidden_size * 8 / 3) // 64) * 64

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "GPTPriorConfig":
        if name not in GPT_PRESETS:
            raise ValueError(f"size={name!r}: expected one of {sorted(GPT_PRESETS)}")
        return cls(**{**GPT_PRESETS[name], **kwargs})

    @property
    def sequence_length(self) -> int:
        return self.grid_shape[0] * self.grid_shape[1]

    @property
    def context_length(self) -> int:
        return self.context_grid_shape[0] * self.context_grid_shape[1] if self.context_grid_shape else 0

    @property
    def null_token(self) -> int:
        return self.codebook_size + self.num_classes

    @property
    def context_offset(self) -> int:
        """Token id of the top code 0."""
        return self.null_token + 1

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.num_classes + 1 + self.context_codebook_size


class GPTPrior(PriorFiles, nn.Module):
    """codes (B, h, w) [+ labels (B,)] → logits (B, h, w, K); `sample` writes new grids."""

    prior_type = "gpt"
    config_class = GPTPriorConfig

    def __init__(self, config: GPTPriorConfig):
        super().__init__()
        self.config = config
        llama = LlamaConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_heads,
            max_position_embeddings=config.context_length + config.sequence_length,
            rope_theta=config.rope_theta,
            rms_norm_eps=config.rms_norm_eps,
            attention_dropout=config.dropout,
            bos_token_id=config.null_token,
            eos_token_id=config.null_token,
            tie_word_embeddings=False,
        )
        llama._attn_implementation = "sdpa"
        self.transformer = LlamaForCausalLM(llama)
        if config.positions != "sequence" or config.zero_condition_rope:
            self.transformer.model.rotary_emb = rotary_table(
                config.positions, config.zero_condition_rope, config.hidden_size // config.num_heads,
                config.rope_theta, 1 + config.context_length, config.grid_shape)
        # sample(compile=True): one compiled static decoder per (batch, device, dtype), refreshed at each call.
        self._compiled_decoders: dict[tuple, FusedLlamaDecoder] = {}

    # --- training -------------------------------------------------------------------------------------

    def condition_tokens(self, labels: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor:
        """Labels (B,) with -1 for none → condition token ids (B,): class token K + y, or the null token."""
        if labels is None:
            return torch.full((batch_size,), self.config.null_token, dtype=torch.long, device=device)
        labels = labels.to(device=device, dtype=torch.long)
        check_labels(labels, self.config.num_classes)
        return torch.where(labels >= 0, labels + self.config.codebook_size, self.config.null_token)

    def context_tokens(self, context: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor:
        """Top grids (B, h_t, w_t) → their token ids (B, T); (B, 0) for a prior without a context."""
        grids = context_grids(context, batch_size, self.config)
        if grids is None:
            return torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        return grids.to(device).reshape(batch_size, -1) + self.config.context_offset

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, h, w, K): the logits at a cell predict that cell from the condition, the context (a
        bottom-level prior's top grid (B, h_t, w_t)) and the cells before it."""
        check_codes(codes, self.config.grid_shape, self.config.codebook_size)
        b = codes.shape[0]
        tokens = codes.reshape(b, -1).long()  # (B, h*w)
        condition = self.condition_tokens(labels, b, codes.device)[:, None]  # (B, 1)
        head = torch.cat([condition, self.context_tokens(context, b, codes.device)], dim=1)  # (B, 1 + T)
        inputs = torch.cat([head, tokens[:, :-1]], dim=1)  # the codes shifted right behind the head
        embeddings = self.transformer.get_input_embeddings()(inputs)  # (B, T + h*w, D)
        embeddings = F.dropout(embeddings, self.config.dropout, self.training)  # a regulariser for small data sets
        logits = self.transformer(inputs_embeds=embeddings, use_cache=False).logits
        logits = logits[:, self.config.context_length :, : self.config.codebook_size]  # (B, h*w, K)
        return logits.reshape(b, *self.config.grid_shape, self.config.codebook_size)

    # --- sampling -------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, batch_size: int, class_labels=None, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, guidance_scale: float = 1.0, prefix=None,
               generator: torch.Generator | None = None, max_batch_size: int = 256, use_cache: bool = True,
               context=None, compile: bool = False, progress: bool = False) -> torch.Tensor:
        """New code grids (B, h, w), through `sampling.sample_grids`. `prefix` (B, p) tokens or (B, rows, w) code
        rows is kept and continued; `context` (B, h_t, w_t): the top grids a bottom-level prior writes its grids
        for; `progress`: a bar over the grids.

        guidance_scale 1.0 is plain conditional sampling; other values run the null condition beside it (with
        the same context) and mix the logits. Batches above `max_batch_size` are sampled in chunks.
        `use_cache=False` recomputes the whole sequence at each step (for comparison only). `compile=True` runs
        each new token through a compiled step (decode_step.compile_decoder: fixed shapes and CUDA graphs on a
        GPU; on a CPU over the filled positions with the small ops fused): the first call per batch size pays
        the compilation (seconds to a minute), later calls reuse it; the same tokens up to float rounding in the
        logits.
        """
        return sample_grids(self, batch_size, class_labels, temperature, top_k, top_p, guidance_scale, prefix,
                            generator, context, max_batch_size, progress, use_cache=use_cache, compile=compile)

    def start_sampling(self, labels: torch.Tensor, context: torch.Tensor | None, use_cache: bool = True,
                       compile: bool = False):
        """`next_logits` for `sampling.sample_grids`: labels (B',) (-1: the null token), top grids (B', h_t, w_t)
        or None → a function of the codes so far (B', t) giving the logits (B', K) of code t."""
        b, device = labels.shape[0], labels.device
        head = torch.cat([self.condition_tokens(labels, b, device)[:, None], self.context_tokens(context, b, device)],
                         dim=1)  # (B', 1 + T)
        if not use_cache:
            return lambda tokens: self._recomputed_code_logits(torch.cat([head, tokens], dim=1))
        return CachedSteps(self._decoder(b, compile), head)

    def _recomputed_code_logits(self, sequence: torch.Tensor) -> torch.Tensor:
        """Logits over the K codes for the token after `sequence` (B', t), recomputing the whole sequence through
        transformers (`use_cache=False`: the slow reference the decode step is compared with)."""
        hidden = self.transformer.model(input_ids=sequence, use_cache=False).last_hidden_state[:, -1]  # (B', D)
        return hidden @ self.transformer.lm_head.weight[: self.config.codebook_size].t()  # (B', K)

    def _decoder(self, batch_size: int, compile: bool) -> FusedLlamaDecoder:
        """The fused decode step for a batch: built fresh, or the compiled one for this shape with its weights
        refreshed from the model (so training between calls is seen, and the graph is replayed, not rebuilt)."""
        length = self.config.context_length + self.config.sequence_length
        if not compile:
            return FusedLlamaDecoder(self.transformer, self.config.codebook_size, batch_size, length)
        key = (batch_size, self.transformer.device, self.transformer.dtype)
        decoder = self._compiled_decoders.get(key)
        if decoder is None:
            # Fixed shapes for CUDA graphs on a GPU; on a CPU the compiled step reads the filled positions only.
            static = self.transformer.device.type == "cuda"
            decoder = FusedLlamaDecoder(self.transformer, self.config.codebook_size, batch_size, length, static=static)
            self._compiled_decoders[key] = compile_decoder(decoder)
        else:
            decoder.load_weights(self.transformer)
        return decoder


class CachedSteps:
    """`next_logits` through the fused decode step: the head (B', 1 + T) and the codes so far go in as the first
    call's prompt, then each call the one code written since (one forward pass per new code)."""

    def __init__(self, decoder: FusedLlamaDecoder, head: torch.Tensor):
        self.decoder, self.head = decoder, head

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        seen = self.decoder.filled - self.head.shape[1]  # codes in the cache; negative before the prompt
        new = torch.cat([self.head, tokens], dim=1) if seen < 0 else tokens[:, seen:].contiguous()
        return self.decoder(new)  # (B', K)
