"""LlamaGen's class-to-image GPTs converted into GPTPriors, checked against LlamaGen's own code.

tests/fixtures/llamagen_gpt_tiny.safetensors holds a random-weight model in LlamaGen's layout and what LlamaGen's
forward and generate computed from it (tests/fixtures/make_llamagen_gpt_fixture.py, run once with its code).
"""

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from prior import GPTPrior, GPTPriorConfig
from prior.llamagen import convert_llamagen_gpt, grid_size_from_name, permute_rotary_rows, read_llamagen_gpt
from prior.rotary import TableRotaryEmbedding

FIXTURE = Path(__file__).parent / "fixtures" / "llamagen_gpt_tiny.safetensors"


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE))


def llamagen_weights(reference) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v.clone() for k, v in reference.items() if k.startswith("model.")}


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory) -> GPTPrior:
    # LlamaGen's DDP files: {"model": ..., "args": argparse.Namespace}; the Namespace is read inertly, not run.
    path = tmp_path_factory.mktemp("llamagen") / "c2i_tiny_64.pt"
    torch.save({"model": llamagen_weights(reference), "args": argparse.Namespace(gpt_model="GPT-tiny", lr=1e-4),
                "steps": 10}, path)
    return read_llamagen_gpt(path, num_heads=2)  # 64 px / 16 = the 4x4 grid


def test_teacher_forced_logits_equal_llamagen(converted, reference):
    codes, labels = reference["codes"], reference["labels"]
    labels = torch.where(labels == 5, -1, labels)  # LlamaGen's null class 5 is Tessera's "no class"
    with torch.no_grad():
        logits = converted(codes.view(3, 4, 4), labels)  # (3, 4, 4, 48)
    expected = reference["logits"].view(3, 4, 4, 48)
    assert (logits - expected).abs().max() < 1e-4
    assert converted.config.grid_shape == (4, 4) and converted.config.num_classes == 5


@pytest.mark.parametrize("scale, key", [(2.5, "guided_codes"), (1.0, "plain_codes")])
def test_greedy_sampling_draws_llamagen_codes(converted, reference, scale, key):
    """top_k=1 is LlamaGen's sample_logits=False: the same codes prove the guided logits mix as LlamaGen's do
    (uncond + s (cond - uncond)) through the fused decode step and its KV cache."""
    codes = converted.sample(2, class_labels=reference["guided_labels"], guidance_scale=scale, top_k=1)
    assert torch.equal(codes.view(2, 16), reference[key])


def test_converted_rotary_is_the_grid_table_with_a_zero_condition_row(converted):
    rotary = converted.transformer.model.rotary_emb
    assert isinstance(rotary, TableRotaryEmbedding)
    assert rotary.cos.shape == (17, 16) and not rotary.cos[0].any() and not rotary.sin[0].any()
    # Code 5 sits at row 1, column 1; codes 1 and 4 at (0, 1) and (1, 0): the row half of the angles of code 4
    # equals the column half of code 1.
    assert torch.equal(rotary.cos[1 + 4, :4], rotary.cos[1 + 1, 4:8])
    assert torch.equal(rotary.cos[1 + 5, :8], torch.cat([rotary.cos[1 + 4, :4], rotary.cos[1 + 1, 4:8]]))


def test_saved_and_loaded_the_converted_prior_samples_the_same(converted, reference, tmp_path):
    converted.save_pretrained(tmp_path / "prior")
    loaded = GPTPrior.from_pretrained(tmp_path / "prior")
    assert loaded.config.positions == "grid" and loaded.config.tokenizer_source == "llamagen"
    codes = loaded.sample(2, class_labels=reference["guided_labels"], guidance_scale=2.5, top_k=1)
    assert torch.equal(codes.view(2, 16), reference["guided_codes"])


def test_native_priors_keep_transformers_rope_and_norm():
    prior = GPTPrior(GPTPriorConfig.from_preset("tiny", codebook_size=16, grid_shape=(4, 4)))
    assert type(prior.transformer.model.rotary_emb) is LlamaRotaryEmbedding
    assert prior.transformer.config.rms_norm_eps == 1e-6


def test_permuting_rotary_rows_moves_adjacent_pairs_to_halves():
    rows = torch.arange(8.0)[:, None].expand(8, 3)  # one head of 8: pairs (0,1) (2,3) (4,5) (6,7)
    assert permute_rotary_rows(rows, 1)[:, 0].tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_grid_size_comes_from_the_file_name():
    assert grid_size_from_name("c2i_B_256.pt") == 16 and grid_size_from_name("c2i_XL_384.pt") == 24
    assert grid_size_from_name("model.pt") is None
    with pytest.raises(ValueError, match="give grid_size"):
        read_llamagen_gpt("checkpoint.pt")


def test_weights_that_find_no_place_are_named(reference):
    state = llamagen_weights(reference)
    state["layers.0.attention.extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"find no place.*layers\.0\.attention\.extra\.weight"):
        convert_llamagen_gpt(state, 4, 2)
    state = llamagen_weights(reference)
    del state["layers.1.feed_forward.w3.weight"]
    with pytest.raises(ValueError, match=r"lacks \['layers\.1\.feed_forward\.w3\.weight'\]"):
        convert_llamagen_gpt(state, 4, 2)
    with pytest.raises(ValueError, match="not a LlamaGen size.*give num_heads"):
        convert_llamagen_gpt(llamagen_weights(reference), 4)


def test_text_to_image_checkpoints_are_refused(reference):
    state = llamagen_weights(reference)
    del state["cls_embedding.embedding_table.weight"]
    state["cls_embedding.cap_proj.fc1.weight"] = torch.zeros(32, 8)
    with pytest.raises(ValueError, match="text-to-image"):
        convert_llamagen_gpt(state, 4, 2)


# --- a converted pair in the pipeline -----------------------------------------------------------------------


def imagenet_prior_file(reference, folder: Path) -> Path:
    """The fixture's model with a 1,001-row class table (LlamaGen's ImageNet models): c2i_tiny_64.pt."""
    state = llamagen_weights(reference)
    state["cls_embedding.embedding_table.weight"] = torch.randn(1001, 32, generator=torch.Generator().manual_seed(0))
    torch.save({"model": state}, folder / "c2i_tiny_64.pt")
    return folder / "c2i_tiny_64.pt"


def write_llamagen_pair(work: Path, tokenizer_dir: Path, prior_dir: Path) -> dict:
    """What tessera convert writes from LlamaGen's files, at test size: a LlamaGen VQ of 48 codes on a 4x4 grid
    at 16 px (the fixture prior's codes), and the fixture prior with ImageNet's 1,000 classes; the prior's
    conversion summary."""
    from pipelines.commands import convert
    from tests.test_conversion import JANUS_CONFIGS, llamagen_state_dict, perturbed
    from transformers import JanusVQVAE, JanusVQVAEConfig

    vq = perturbed(JanusVQVAE(JanusVQVAEConfig(**{**JANUS_CONFIGS["one-block"], "num_embeddings": 48})), True)
    torch.save({"model": llamagen_state_dict(vq)}, work / "vq_ds4.pt")
    convert.main(["--source", "llamagen", str(work / "vq_ds4.pt"), "--resolution", "16",
                  "--output_dir", str(tokenizer_dir)])
    return convert.main(["--source", "llamagen-gpt", str(imagenet_prior_file(load_file(str(FIXTURE)), work)),
                         "--num_heads", "2", "--output_dir", str(prior_dir)])


@pytest.fixture(scope="module")
def converted_pair(tmp_path_factory) -> Path:
    """tokenizer/ and prior/ as write_llamagen_pair makes them."""
    folder = tmp_path_factory.mktemp("pair")
    summary = write_llamagen_pair(folder, folder / "tokenizer", folder / "prior")
    assert summary["grid"] == [4, 4] and summary["converted_from"]["num_heads"] == 2
    return folder


def test_a_converted_llamagen_pair_generates_imagenet_classes_by_name(converted_pair, tmp_path):
    from pipelines import ImageGenerationPipeline, load_pipeline
    from tokenizer import load_tokenizer

    pipe = load_pipeline(tokenizer=converted_pair / "tokenizer", prior=converted_pair / "prior")
    assert pipe.class_names[207] == "golden retriever" and len(pipe.class_names) == 1000
    out = pipe(2, class_labels=["golden retriever", "otter"], guidance_scale=2.0, top_k=4, output_type="pt",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 3, 16, 16) and out.indices.shape == (2, 4, 4)
    pipe.save_pretrained(tmp_path / "pipeline")  # the tokenizer's provenance travels with it
    again = load_pipeline(tmp_path / "pipeline")
    assert again.tokenizer.converted_from["source"] == "llamagen"

    # A tokenizer trained here (or converted from elsewhere) does not pair with a LlamaGen prior, even with the
    # same codebook size and grid.
    native = load_tokenizer(converted_pair / "tokenizer")
    native.converted_from = None
    with pytest.raises(ValueError, match="tokenizer source: the prior models codes of a tokenizer converted from "
                                         "llamagen.*was not converted"):
        ImageGenerationPipeline(native, pipe.prior)


def test_a_converted_prior_fine_tunes_on_codes_with_other_classes(converted_pair, tmp_path):
    """train_prior --init_from: the code rows and the null row come over, each new class starts as the null row
    (learning rate 0 keeps the weights as they start), and the codes' tokenizer is recorded."""
    from pipelines import TokenizeDatasetConfig, tokenize_dataset
    from pipelines.training import train_prior
    from prior.loading import load_prior
    from prior.training import TrainPriorConfig
    from tests.conftest import write_images

    images = write_images(tmp_path / "pictures", 4, size=16, classes=("cats", "dogs", "owls"))
    manifest = tokenize_dataset(converted_pair / "tokenizer", TokenizeDatasetConfig(
        dataset=str(images), split="train", output_dir=str(tmp_path / "codes"), num_workers=0, progress=False))
    out = train_prior(TrainPriorConfig(
        codes_dir=str(tmp_path / "codes"), output_dir=str(tmp_path / "tuned"), init_from=str(converted_pair / "prior"),
        max_steps=2, batch_size=4, learning_rate=0.0, warmup_steps=0, validation_fraction=0.0, progress=False))
    start, tuned = load_prior(converted_pair / "prior"), load_prior(out)
    assert tuned.config.num_classes == 3 and tuned.config.class_names == ("cats", "dogs", "owls")
    assert tuned.config.tokenizer_fingerprint == manifest["tokenizer_fingerprint"]
    assert tuned.config.positions == "grid" and tuned.config.tokenizer_source == "llamagen"
    old = start.transformer.model.embed_tokens.weight
    new = tuned.transformer.model.embed_tokens.weight
    assert new.shape == (48 + 3 + 1, 32)
    assert torch.equal(new[:48], old[:48]) and torch.equal(new[51], old[48 + 1000])  # codes, null
    assert torch.equal(new[48:51], old[48 + 1000].expand(3, -1))  # each new class starts as the null class
    assert torch.equal(tuned.transformer.lm_head.weight[:48], start.transformer.lm_head.weight[:48])

    with pytest.raises(ValueError, match=r"models \(4, 4\) grids of 48 codes.*\(2, 3\) grids of 50 codes"):
        from tests.conftest import make_codes

        make_codes(tmp_path / "other")
        train_prior(TrainPriorConfig(codes_dir=str(tmp_path / "other"), output_dir=str(tmp_path / "x"),
                                     init_from=str(converted_pair / "prior"), max_steps=1, progress=False))
