"""Model cards (what a trained folder's README.md says), pushes at the end and at checkpoints through a mocked Hub
API, and the run's grids in the trackers."""

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi

from pipelines import ImageGenerationPipeline
from pipelines.training import train_prior, train_tokenizer
from tessera_hub import HubSettings
from tessera_hub.model_card import hub_dataset_ids
from tests.conftest import tiny_prior_for, tiny_vqgan
from tests.test_prior_training import codes_dir, tiny_config  # noqa: F401 (a fixture)
from tests.test_training import image_folder, tiny_train_config  # noqa: F401 (a fixture)


def card(folder: Path) -> huggingface_hub.ModelCard:
    return huggingface_hub.ModelCard.load(folder / "README.md")


def last_logged(folder: Path, name: str) -> float:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r[name] for r in records if name in r][-1]


def fenced(text: str, language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", text, re.S).group(1)


def test_a_trained_tokenizer_carries_a_card_with_its_metrics_grid_config_and_snippet(image_folder, tmp_path):
    out = tmp_path / "run"
    train_tokenizer(tiny_train_config(image_folder, out, max_steps=2, image_every=2))
    c = card(out)
    assert c.data.library_name == "tessera" and c.data.pipeline_tag == "image-feature-extraction"
    assert {"tessera", "image-tokenizer"} <= set(c.data.tags) and c.data.datasets is None  # a local folder
    assert "psnr" in c.data.metrics and f"| psnr | {last_logged(out, 'psnr'):.4g} |" in c.text
    assert "vqgan image tokenizer: 16x16-pixel RGB images <-> a 4x4 grid of codes from 16" in c.text
    # The newest reconstruction grid, copied beside the weights so that the Hub page shows it too.
    assert (out / "grid.png").read_bytes() == (out / "images" / "reconstructions_0000002.png").read_bytes()
    assert "](grid.png)" in c.text
    assert json.loads(fenced(c.text, "json")) == json.loads((out / "train_config.json").read_text())
    namespace = {"images": torch.zeros(2, 3, 16, 16)}
    exec(fenced(c.text, "python"), namespace)  # the card's loading snippet, naming this folder
    assert namespace["codes"].shape == (2, 4, 4) and namespace["reconstructions"].shape == (2, 3, 16, 16)


def test_a_saved_pipeline_card_describes_both_stages_and_loads(tmp_path):
    tokenizer = tiny_vqgan(16, codebook_size=16)
    pipe = ImageGenerationPipeline(tokenizer, tiny_prior_for(tokenizer, num_classes=2, class_names=("cats", "dogs")))
    pipe.save_pretrained(tmp_path / "pipe")
    c = card(tmp_path / "pipe")
    assert c.data.pipeline_tag == "unconditional-image-generation"
    assert "16x16-pixel images as 4x4 codes of 16 (vqgan tokenizer), written by a gpt prior (2 classes: cats, dogs)" in c.text
    namespace = {}
    exec(fenced(c.text, "python"), namespace)
    assert len(namespace["images"]) == 16
    assert "over 4x4 grids of 16 codes made by the tokenizer with fingerprint" in card(tmp_path / "pipe" / "prior").text


def test_built_in_and_hub_data_sets_become_card_datasets(tmp_path):
    assert hub_dataset_ids(["fashion-mnist", "emoji", "user/pictures", str(tmp_path), ""]) == [
        "zalando-datasets/fashion_mnist", "user/pictures"]


@pytest.fixture
def hub_uploads(tmp_path, monkeypatch) -> list[dict]:
    """HfApi's create_repo and upload_folder, recorded; each upload's files copied under tmp_path/uploads/<n>."""
    uploads = []

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, commit_message=None, **kwargs):
        copy = tmp_path / "uploads" / str(len(uploads))
        shutil.copytree(folder_path, copy)
        uploads.append({"repo_id": repo_id, "path_in_repo": path_in_repo, "message": commit_message, "files": copy})
        return f"https://huggingface.co/{repo_id}/commit/{'c' * 40}"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return uploads


def test_push_to_hub_pushes_each_checkpoint_and_the_final_prior_with_its_card(codes_dir, tmp_path, hub_uploads):
    hub = HubSettings(push_to_hub=True, hub_model_id="someone/tiny-prior", hub_strategy="checkpoint")
    out = train_prior(tiny_config(codes_dir, tmp_path / "run", max_steps=4, checkpoint_every=2, hub=hub))
    checkpoints = [u for u in hub_uploads if u["path_in_repo"] == "last-checkpoint"]
    assert [u["message"] for u in checkpoints] == ["checkpoint at step 2", "checkpoint at step 4"]
    assert all((u["files"] / "training_state.json").is_file() for u in checkpoints)
    final = hub_uploads[-1]
    assert final["repo_id"] == "someone/tiny-prior" and final["path_in_repo"] in (None, "")
    assert sorted(p.name for p in final["files"].iterdir()) == ["README.md", "config.json", "model.safetensors"]
    pushed = card(final["files"])
    assert 'GPTPrior.from_pretrained("someone/tiny-prior")' in pushed.text
    assert f"| val_bits_per_token | {last_logged(out, 'val_bits_per_token'):.4g} |" in pushed.text
    assert pushed.data.metrics == ["bits_per_token", "val_bits_per_token"]


def test_push_to_hub_needs_a_repo_and_a_known_strategy():
    with pytest.raises(ValueError, match="push_to_hub needs hub_model_id"):
        HubSettings(push_to_hub=True)
    with pytest.raises(ValueError, match="hub_strategy='every_step': expected one of"):
        HubSettings(hub_strategy="every_step")


def test_reconstruction_grids_go_to_tensorboard_as_images(image_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_tokenizer(tiny_train_config(image_folder, out, max_steps=2, image_every=1, report_to="tensorboard"))
    events = sorted((out / "logs" / "tokenizer").glob("events.out.tfevents.*"))  # (sub-folders: the hparams)
    assert len(events) == 1, events
    accumulator = EventAccumulator(str(events[0]), size_guidance={"images": 0})
    accumulator.Reload()
    assert "reconstructions" in accumulator.Tags()["images"]
    assert [e.step for e in accumulator.Images("reconstructions")] == [1, 2]
    assert "psnr" in accumulator.Tags()["scalars"]
