"""Named prior training recipes, as plain data (the tokenizer's are in tokenizer/training/presets.py).

Each preset is a partial `TrainPriorConfig` as a JSON-style dict; `train_prior.py --preset NAME` starts from it,
and `--config` / flags override it. The codes are never part of a preset: they are the user's.

- "small-32px": a small GPT over the 8x8 grids of a small data set on a CPU budget (the demo's emoji,
  Fashion-MNIST): AdamW at 1e-3 with a cosine schedule, batch 32. TrainPriorConfig's defaults are this preset
  (a test keeps them equal); benchmarks/bench_prior_overfitting.py measured its remedies against overfitting
  (docs/training.md, "Train a prior").
- "imagenet-gpt-b": LlamaGen's class-conditional GPT-B (FoundationVision/LlamaGen,
  autoregressive/train/train_c2i.py): 12 layers, width 768, 12 heads ("base"), AdamW lr 1e-4 held constant
  without warm-up, betas (0.9, 0.95), weight decay 0.05, gradient clip 1.0, bf16, label dropout 0.1 for
  classifier-free guidance, dropout 0.1 (LlamaGen drops residual, FFN and token-embedding activations; this GPT
  drops token embeddings and attention weights), global batch 256 (32 per process on 8 GPUs), 300 epochs of
  ImageNet's 1,281,167 images = 1.5M steps, a checkpoint every 5,000. For users with GPUs.
"""

from __future__ import annotations

PRIOR_PRESETS: dict[str, dict] = {
    "small-32px": {
        "prior": "gpt", "size": "small", "batch_size": 32, "learning_rate": 1e-3, "weight_decay": 0.05,
        "adam_betas": [0.9, 0.95], "warmup_steps": 100, "lr_schedule": "cosine", "max_grad_norm": 1.0,
        "class_dropout": 0.1,
    },
    "imagenet-gpt-b": {
        "prior": "gpt", "size": "base", "batch_size": 32, "learning_rate": 1e-4, "weight_decay": 0.05,
        "adam_betas": [0.9, 0.95], "warmup_steps": 0, "lr_schedule": "constant", "max_grad_norm": 1.0,
        "mixed_precision": "bf16", "class_dropout": 0.1, "dropout": 0.1, "max_steps": 1_500_000,
        "checkpoint_every": 5000, "eval_every": 5000, "sample_every": 5000, "log_every": 100,
    },
}
