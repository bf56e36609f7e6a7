"""Named tokenizer training recipes, as plain data (LlamaGen's `VQ_models = {...}`).

Each preset is a partial `TrainTokenizerConfig` as a JSON-style dict (nested sections `model` (with its
`autoencoder`), `loss`, `discriminator`, `data`); `train_tokenizer.py --preset NAME` starts from it, and
`--config` / flags override it.
The data set is never part of a preset: it is the user's.

- "small-32px": small data sets at 32 px on CPU budgets (Fashion-MNIST, emoji): an 8x8 grid, width 64, a
  256-code EMA codebook, L1 + ST-LPIPS-AlexNet perceptual at 0.1 + a 2-layer patch GAN with the adaptive weight from 60% of
  the run, its generator term ramped in over 60 steps, AdamW at 1e-3 with a cosine schedule, and a codebook EMA
  decay of 0.9 (at 0.99 the codebook trails the fast-moving encoder and collapses early). Short runs on emoji
  chose these (docs/benchmarks.md, "Why the demo's reconstructions were smeared"); benchmarks/bench_recipe.py trains it
  against its ablations (docs/benchmarks.md, "The recipe, measured").
- "imagenet-vq16": LlamaGen's VQ-16 (FoundationVision/LlamaGen, tokenizer/tokenizer_image/vq_train.py and
  vq_model.py): 256 px, 16x16 grid, 16,384 l2-normalised 8-dim codes updated by gradient, widths 128·(1,1,2,2,4),
  2 residual blocks, attention after each block of the lowest level and in the middle (71,883,403 parameters, as
  LlamaGen's VQ-16 has), L2 + perceptual (weight 1) + hinge patch GAN from step
  20,000 (weight 0.5), AdamW lr 1e-4, betas (0.9, 0.95), weight decay 0.05, clip 1.0, bf16, EMA of weights.
  LlamaGen's global batch is 128: 16 per process on 8 GPUs here. For users with GPUs.
"""

from __future__ import annotations

TOKENIZER_PRESETS: dict[str, dict] = {
    "small-32px": {
        "model": {"autoencoder": {"resolution": 32, "downsample_factor": 4, "channels": 64, "z_channels": 64},
                  "quantizer": {"codebook_size": 256, "code_dim": 8, "ema_decay": 0.9}},
        # Why (docs/benchmarks.md, "The recipe, measured"): the discriminator starts at 60% of max_steps (earlier cost PSNR
        # and rFID); the generator's GAN term ramps in over 60 steps (at once, PSNR fell after the start);
        # ST-LPIPS-AlexNet at 0.1, not VGG at 1.0 (which painted colour into grey images, cost PSNR and time).
        "loss": {"reconstruction_loss": "l1", "perceptual_loss": "stlpips-alex", "perceptual_weight": 0.1,
                 "gan_weight": 0.5, "gan_ramp_steps": 60},
        "discriminator": {"channels": 64, "num_layers": 2},
        "max_steps": 10_000, "learning_rate": 1e-3, "lr_schedule": "cosine", "warmup_steps": 50, "batch_size": 32,
    },
    "imagenet-vq16": {
        "data": {"resolution": 256},
        "model": {"autoencoder": {"resolution": 256, "downsample_factor": 16, "channels": 128,
                                  "channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "z_channels": 256,
                                  "use_attention": True, "attention_levels": [4]},
                  "quantizer": {"codebook_size": 16384, "code_dim": 8, "l2_normalize": True, "use_ema": False,
                                "kmeans_init": False, "dead_code_threshold": 0.0}},
        "loss": {"reconstruction_loss": "l2", "perceptual_loss": "stlpips-vgg", "perceptual_weight": 1.0,
                 "gan_loss": "hinge", "gan_weight": 0.5, "disc_start_step": 20_000, "gan_ramp_steps": 0},
        "discriminator": {"channels": 64, "num_layers": 3},
        "max_steps": 400_000, "batch_size": 16, "learning_rate": 1e-4, "adam_betas": [0.9, 0.95],
        "weight_decay": 0.05, "max_grad_norm": 1.0, "lr_schedule": "constant", "mixed_precision": "bf16",
        "ema_decay": 0.9999, "checkpoint_every": 5000, "image_every": 5000, "log_every": 100,
    },
}
