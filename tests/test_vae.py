"""The plain VAE: the Gaussian bottleneck (reparameterised in training, the mean at inference), the closed-form KL
against torch.distributions, the β_KL-weighted loss, the negative ELBO of the evaluation, training and exact resume
through the one training command, files, and generation from N(0, I) through the pipeline and the scripts."""

import json
import math

import pytest
import torch
from PIL import Image
from torch.distributions import Normal, kl_divergence

from pipelines.evaluation import evaluate_tokenizer, split_images
from pipelines.generation import ImageGenerationPipeline, load_pipeline
from pipelines.training import train_tokenizer
from tests.conftest import run_script, tiny_prior, tiny_vae_config, tiny_vqgan, write_images
from tests.test_training import (all_weights, assert_same_weights, image_folder, stop_after_step_2,  # noqa: F401
                                 tiny_train_config)
from tokenizer import VAE, VQGAN, AutoencoderConfig, VQVAE2Config, build_tokenizer, load_tokenizer
from tokenizer.data import ImageDataConfig
from tokenizer.losses import LossConfig, VQGANLoss
from tokenizer.models.vae import gaussian_kl


def tiny_vae(seed: int = 0, **overrides) -> VAE:
    torch.manual_seed(seed)
    return VAE(tiny_vae_config(**overrides)).eval()


def images(count: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_encode_gives_the_posterior_mean_and_eval_reconstructs_from_it():
    model = tiny_vae()
    mean, logvar = model.encode_distribution(images())
    assert mean.shape == logvar.shape == (2, 3, 4, 4) == (2, *model.config.latent_shape)
    assert torch.equal(model.encode(images()), mean)
    out = model(images())
    assert torch.allclose(out.reconstruction, model.decode(mean), atol=1e-6)
    assert model.decode(mean).shape == (2, 3, 16, 16)
    # No codes: no levels, no grids, no codebook.
    assert model.num_levels == 0 and model.config.grid_shapes == [] and model.config.codebook_sizes == []
    with pytest.raises(ValueError, match="no codebook"):
        model.config.codebook_size


def test_training_samples_with_the_reparameterisation_trick_and_gradients_reach_both_heads():
    model = tiny_vae().train()
    torch.manual_seed(3)
    first = model(images())
    torch.manual_seed(4)
    second = model(images())
    assert not torch.allclose(first.reconstruction, second.reconstruction)  # a fresh ε each pass
    assert torch.equal(first.mean, second.mean) and torch.equal(first.logvar, second.logvar)
    # Through the sample, the reconstruction alone puts a gradient into the log-variance head's rows.
    model.zero_grad()
    first.reconstruction.pow(2).mean().backward()
    grad = model.moments.weight.grad  # (2C, z, 1, 1): mean rows, then log-variance rows
    assert grad[:3].abs().sum() > 0 and grad[3:].abs().sum() > 0


def test_kl_is_the_closed_form_of_torch_distributions_and_the_loss_is_weighted_per_image_dimension():
    mean, logvar = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    reference = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    assert torch.allclose(gaussian_kl(mean, logvar), reference, atol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)), torch.zeros(1))  # q = prior
    out = tiny_vae().train()(images())
    loss_fn = VQGANLoss(LossConfig(kl_weight=0.25, perceptual_loss="none", disc_start_step=0))
    assert loss_fn.latent_loss(out).item() == pytest.approx(0.25 * out.kl.mean().item() / (3 * 16 * 16), rel=1e-5)
    assert out.latent_logs["kl_nats"] == pytest.approx(out.kl.mean().item(), rel=1e-5)
    assert out.latent_name == "kl_loss"


def test_config_fields_and_fingerprints_of_each_architecture():
    with pytest.raises(ValueError, match="latent_channels=0"):
        tiny_vae_config(latent_channels=0)
    with pytest.raises(ValueError, match="kl_weight=-1"):
        LossConfig(kl_weight=-1)
    with pytest.raises(ValueError, match="VQGAN is built from a VQGANConfig"):
        VQGAN(tiny_vae_config())
    assert isinstance(build_tokenizer(tiny_vae_config()), VAE)
    # Each architecture's fingerprint reads only its own fields (and no loss weight), so the VAE's did not change
    # the others'.
    vae_fields = tiny_vae_config().fingerprint_dict().keys()
    assert "latent_channels" in vae_fields and not {"kl_weight", "quantizer", "top_quantizer"} & vae_fields
    assert not {"latent_channels", "kl_weight", "architecture"} & tiny_vqgan().config.fingerprint_dict().keys()
    vqvae2_fields = VQVAE2Config(AutoencoderConfig(resolution=16)).fingerprint_dict().keys()
    assert "top_quantizer" in vqvae2_fields and not {"latent_channels", "kl_weight"} & vqvae2_fields


def test_save_load_round_trip(tmp_path):
    model = tiny_vae()
    model.save_pretrained(tmp_path / "vae")
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["architecture"] == "vae"
    for loaded in (VAE.from_pretrained(tmp_path / "vae"), load_tokenizer(tmp_path / "vae")):
        assert isinstance(loaded, VAE) and loaded.config == model.config
        assert loaded.fingerprint() == model.fingerprint()
        assert torch.equal(loaded.encode(images()), model.encode(images()))
    with pytest.raises(ValueError, match="holds a 'vae' tokenizer"):
        VQGAN.from_pretrained(tmp_path / "vae")


def test_evaluation_reports_kl_rate_and_the_negative_elbo(tmp_path):
    data = ImageDataConfig(dataset=str(write_images(tmp_path / "images", 5)), resolution=16)
    model = tiny_vae()
    with torch.no_grad():  # σ → 0: the sampled latent is the mean, so the Laplace scale is the mean |error|
        model.moments.bias[3:] = -30.0
        model.moments.weight[3:] = 0.0
    metrics = evaluate_tokenizer(model, data, rfid=False, progress=False)
    originals = torch.cat(list(split_images(data, progress=False)))
    with torch.no_grad():
        mean, logvar = model.encode_distribution(originals)
        scale = (model.decode(mean) - originals).abs().mean().item()
        kl = gaussian_kl(mean, logvar).mean().item()
    dims = 3 * 16 * 16
    assert metrics["num_images"] == 5 and "codebook_usage" not in metrics
    assert metrics["laplace_scale"] == pytest.approx(scale, rel=1e-4)
    assert metrics["kl_nats"] == pytest.approx(kl, rel=1e-4)
    assert metrics["rate_bits_per_image"] == pytest.approx(kl / math.log(2), rel=1e-4)
    nll = dims * (1 + math.log(2 * scale) + math.log(127.5))
    assert metrics["reconstruction_nll_nats"] == pytest.approx(nll, rel=1e-4)
    assert metrics["nelbo_nats"] == pytest.approx(nll + kl, rel=1e-4)
    assert metrics["nelbo_bits_per_dim"] == pytest.approx((nll + kl) / (dims * math.log(2)), rel=1e-4)
    # A code tokenizer's rate: cells × log2(codebook size).
    vq = evaluate_tokenizer(tiny_vqgan(), data, rfid=False, progress=False)
    assert vq["rate_bits_per_image"] == pytest.approx(4 * 4 * math.log2(32))


def vae_train_config(image_folder, output, **overrides):
    settings = dict(model=tiny_vae_config(), loss=LossConfig(perceptual_loss="none", disc_start_step=3, kl_weight=0.1),
                    max_steps=4)
    return tiny_train_config(image_folder, output, **{**settings, **overrides})


def test_training_logs_the_kl_and_resumes_exactly(image_folder, tmp_path, monkeypatch):  # noqa: F811 (fixture)
    train_tokenizer(vae_train_config(image_folder, tmp_path / "full"))
    lines = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert {"kl_nats", "kl_loss", "gan_loss", "psnr"} <= lines[-1].keys() and "codebook_usage" not in lines[-1]
    assert isinstance(load_tokenizer(tmp_path / "full"), VAE)

    stop_after_step_2(vae_train_config(image_folder, tmp_path / "resumed"), monkeypatch)
    train_tokenizer(vae_train_config(image_folder, tmp_path / "resumed", resume_from_checkpoint="latest"))
    # The reparameterisation noise after the resume is the noise the uninterrupted run drew.
    assert_same_weights(all_weights(tmp_path / "full"), all_weights(tmp_path / "resumed"))


def test_pipeline_samples_latents_from_the_standard_normal(tmp_path):
    model = tiny_vae()
    pipe = ImageGenerationPipeline(model)
    assert pipe.priors == [] and pipe.class_names == []
    out = pipe(5, generator=torch.Generator().manual_seed(0), output_type="pt", batch_size=2)
    assert out.images.shape == (5, 3, 16, 16) and out.indices is None and out.latents.shape == (5, 3, 4, 4)
    expected = torch.cat([torch.randn((n, 3, 4, 4), generator=g) for g in [torch.Generator().manual_seed(0)]
                          for n in (2, 2, 1)])
    assert torch.allclose(out.latents, expected)
    assert torch.allclose(out.images, (model.decode(expected).clamp(-1, 1) + 1) / 2, atol=1e-5)
    cooler = pipe(5, temperature=0.5, generator=torch.Generator().manual_seed(0), output_type="pt", batch_size=2)
    assert torch.allclose(cooler.latents, 0.5 * expected)
    assert len(pipe(2, output_type="pil").images) == 2
    for bad in (dict(class_labels=1), dict(top_k=5), dict(guidance_scale=2.0), dict(prefix=torch.zeros(1, 1))):
        with pytest.raises(ValueError, match="unconditional"):
            pipe(1, **bad)
    with pytest.raises(ValueError, match="temperature=0"):
        pipe(1, temperature=0)
    # Files: tokenizer/ and pipeline.json alone, the same images back.
    pipe.save_pretrained(tmp_path / "pipe")
    assert not (tmp_path / "pipe" / "prior").exists()
    again = ImageGenerationPipeline.from_pretrained(tmp_path / "pipe")
    assert torch.equal(again(3, generator=torch.Generator().manual_seed(1), output_type="pt").images,
                       pipe(3, generator=torch.Generator().manual_seed(1), output_type="pt").images)
    # The vae's own folder is a whole pipeline too.
    model.save_pretrained(tmp_path / "vae")
    assert torch.equal(load_pipeline(tmp_path / "vae")(2, generator=torch.Generator().manual_seed(1)).latents,
                       pipe(2, generator=torch.Generator().manual_seed(1)).latents)


def test_priors_belong_to_code_tokenizers_only(tmp_path):
    with pytest.raises(ValueError, match="expected no prior"):
        ImageGenerationPipeline(tiny_vae(), tiny_prior())
    with pytest.raises(ValueError, match="expected one prior"):
        ImageGenerationPipeline(tiny_vqgan())
    from pipelines import TokenizeDatasetConfig, tokenize_dataset
    from pipelines.decoder import load_decoder

    tiny_vae().save_pretrained(tmp_path / "vae")
    with pytest.raises(ValueError, match="Gaussian latent"):
        tokenize_dataset(tmp_path / "vae", TokenizeDatasetConfig(
            dataset=str(write_images(tmp_path / "images", 2)), output_dir=str(tmp_path / "codes"), progress=False))
    assert not (tmp_path / "codes").exists()
    with pytest.raises(ValueError, match="Gaussian latent"):
        load_decoder(tmp_path / "vae")


def test_command_lines_train_sample_and_evaluate_a_vae(image_folder, tmp_path):  # noqa: F811 (fixture)
    run_script("train_tokenizer.py", "--architecture", "vae", "--latent_channels", "2", "--kl_weight", "0.05",
               "--dataset", image_folder, "--resolution", "16", "--channels", "8", "--z_channels", "8",
               "--perceptual_loss", "none", "--gan_weight", "0", "--max_steps", "2", "--batch_size", "4",
               "--num_workers", "0", "--output_dir", tmp_path / "vae", "--no_progress")
    trained = load_tokenizer(tmp_path / "vae")
    assert isinstance(trained, VAE) and trained.config.latent_shape == (2, 4, 4)
    assert json.loads((tmp_path / "vae" / "train_config.json").read_text())["loss"]["kl_weight"] == 0.05
    run_script("sample.py", "--tokenizer", tmp_path / "vae", "--num_images", "3", "--temperature", "0.8",
               "--out", tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size[0] > 16
    result = run_script("evaluate.py", "--tokenizer", tmp_path / "vae", "--dataset", image_folder, "--split", "train",
                        "--no_rfid")
    assert "nelbo_bits_per_dim" in json.loads(result.stdout[result.stdout.index("{"):])
