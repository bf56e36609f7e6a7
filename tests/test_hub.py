"""Loading by Hub repo id from a real (hand-laid) huggingface_hub cache, offline; pushing through a faked HfApi;
unreadable or missing weight files."""

import hashlib
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi, scan_cache_dir
from safetensors import safe_open

from pipelines import ImageGenerationPipeline
from prior import GPTPrior, PixelCNNPrior
from tests.conftest import tiny_prior_for, tiny_vqgan
from tokenizer import VQGAN

MAIN, V2 = "a" * 40, "b" * 40  # commits: refs/main -> MAIN, refs/v2 -> V2
KINDS = ("tokenizer", "gpt", "pixelcnn", "pipeline")
LOADERS = {"tokenizer": VQGAN, "gpt": GPTPrior, "pixelcnn": PixelCNNPrior, "pipeline": ImageGenerationPipeline}


def build(kind: str, seed: int):
    """A tiny model of `kind`; `seed` picks its weights (a pipeline's prior is a GPT over its tokenizer)."""
    tokenizer = tiny_vqgan(seed=seed)
    if kind == "tokenizer":
        return tokenizer
    prior = tiny_prior_for(tokenizer, "gpt" if kind == "pipeline" else kind, seed=seed, num_classes=3)
    return ImageGenerationPipeline(tokenizer, prior) if kind == "pipeline" else prior


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def add_to_cache(cache: Path, repo_id: str, folder: Path, commit: str, ref: str) -> None:
    """huggingface_hub's cache layout: blobs/<sha256>, snapshots/<commit>/<path> -> relative symlink to the
    blob, refs/<ref> holding the commit (see the layout in huggingface_hub.file_download.hf_hub_download)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for name, data in files_of(folder).items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)


def outputs(model, kind: str) -> list[torch.Tensor]:
    """What must agree between two loads: every weight, and encode/decode or sampled codes (and images)."""
    gen = torch.Generator().manual_seed(3)
    if kind == "pipeline":
        out = model(2, class_labels=[0, 2], generator=gen, output_type="pt")
        return [out.indices, out.images, *model.tokenizer.state_dict().values(), *model.prior.state_dict().values()]
    if kind == "tokenizer":
        images = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
        codes = model.encode(images)
        return [codes, model.decode(codes), *model.state_dict().values()]
    return [model.sample(2, class_labels=torch.tensor([0, 1]), generator=gen), *model.state_dict().values()]


def same_contents(a: Path, b: Path) -> bool:
    """Same file names and contents; safetensors files compared by tensors and metadata (the library writes the
    metadata's keys in no fixed order, so the bytes may differ)."""
    files_a, files_b = files_of(a), files_of(b)
    if files_a.keys() != files_b.keys():
        return False
    for name in files_a:
        if name.endswith(".safetensors"):
            with safe_open(a / name, "pt") as fa, safe_open(b / name, "pt") as fb:
                if fa.metadata() != fb.metadata() or not same(
                    [fa.get_tensor(k) for k in sorted(fa.keys())], [fb.get_tensor(k) for k in sorted(fb.keys())]
                ) or sorted(fa.keys()) != sorted(fb.keys()):
                    return False
        elif files_a[name] != files_b[name]:
            return False
    return True


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache in tmp_path, the default one, with the Hub switched off."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("kind", KINDS)
def test_loading_by_repo_id_equals_loading_the_folder(kind, tmp_path, offline_cache):
    loader, repo_id = LOADERS[kind], f"tessera-test/{kind}"
    for seed, commit, ref in ((0, MAIN, "main"), (1, V2, "v2")):
        build(kind, seed).save_pretrained(tmp_path / ref)
        add_to_cache(offline_cache, repo_id, tmp_path / ref, commit, ref)
    assert {r.repo_id for r in scan_cache_dir(offline_cache).repos} == {repo_id}  # the library reads our layout

    main = outputs(loader.from_pretrained(tmp_path / "main"), kind)
    v2 = outputs(loader.from_pretrained(tmp_path / "v2"), kind)
    assert not same(main, v2)
    assert same(outputs(loader.from_pretrained(repo_id), kind), main)
    assert same(outputs(loader.from_pretrained(repo_id, revision=MAIN, cache_dir=offline_cache), kind), main)
    assert same(outputs(loader.from_pretrained(repo_id, revision="v2", local_files_only=True), kind), v2)
    assert same(outputs(loader.from_pretrained(repo_id, revision=V2), kind), v2)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_repo_or_path_is_value_error(kind, tmp_path, offline_cache):
    loader = LOADERS[kind]
    with pytest.raises(ValueError, match="'tessera-test/absent' is not a local folder, and the Hub repo"):
        loader.from_pretrained("tessera-test/absent")
    with pytest.raises(ValueError, match="nowhere/at/all: expected a local folder or a Hub repo id; it is neither"):
        loader.from_pretrained(tmp_path / "nowhere" / "at" / "all")
    build(kind, 0).save_pretrained(tmp_path / "saved")
    add_to_cache(offline_cache, "tessera-test/saved", tmp_path / "saved", MAIN, "main")
    with pytest.raises(ValueError, match="revision 'v9'"):
        loader.from_pretrained("tessera-test/saved", revision="v9")
    with pytest.raises(ValueError, match="revision='v2' is for Hub repo ids"):
        loader.from_pretrained(tmp_path / "saved", revision="v2")


@pytest.mark.parametrize("kind", ("tokenizer", "gpt", "pixelcnn"))
def test_missing_or_corrupt_weights_in_a_snapshot_name_the_file(kind, tmp_path, offline_cache):
    folder = tmp_path / "saved"
    build(kind, 0).save_pretrained(folder)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").unlink()
    add_to_cache(offline_cache, "tessera-test/noweights", folder, MAIN, "main")
    with pytest.raises(ValueError, match="model.safetensors is missing: expected a .* folder with config.json"):
        LOADERS[kind].from_pretrained("tessera-test/noweights")
    # Cut short: the header is intact but the data it describes is not all there.
    (folder / "model.safetensors").write_bytes(weights[:-16])
    with pytest.raises(ValueError, match=r"saved/model\.safetensors is not a readable safetensors file: \S"):
        LOADERS[kind].from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(weights[:40])  # header length now points past the end
    add_to_cache(offline_cache, "tessera-test/truncated", folder, MAIN, "main")
    with pytest.raises(ValueError, match=r"snapshots/a{40}/model\.safetensors is not a readable safetensors file"):
        LOADERS[kind].from_pretrained("tessera-test/truncated")


def test_pipeline_with_a_missing_part_names_it(tmp_path, offline_cache):
    build("pipeline", 0).save_pretrained(tmp_path / "pipe")
    (tmp_path / "pipe" / "prior" / "config.json").unlink()
    add_to_cache(offline_cache, "tessera-test/partial", tmp_path / "pipe", MAIN, "main")
    with pytest.raises(ValueError, match=r"prior/config\.json is missing: expected a prior folder"):
        ImageGenerationPipeline.from_pretrained("tessera-test/partial")


@pytest.mark.parametrize("kind", KINDS)
def test_push_uploads_exactly_what_save_pretrained_writes(kind, tmp_path, monkeypatch):
    calls = []

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **kwargs):
        calls.append(("create_repo", repo_id, private, exist_ok))
        return SimpleNamespace(repo_id=f"someone/{repo_id}" if "/" not in repo_id else repo_id)

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message=None, **kwargs):
        calls.append(("upload_folder", repo_id, revision, commit_message))
        shutil.copytree(folder_path, tmp_path / "uploaded")  # the folder is gone once push returns
        return f"https://huggingface.co/{repo_id}/commit/{'c' * 40}"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = build(kind, 0)
    url = model.push_to_hub("tiny", branch="v2", private=True, commit_message="Upload a tiny model")

    assert url == f"https://huggingface.co/someone/tiny/commit/{'c' * 40}"
    assert calls == [("create_repo", "tiny", True, True), ("upload_folder", "someone/tiny", "v2", "Upload a tiny model")]
    model.save_pretrained(tmp_path / "saved", model_card_kwargs={"name": "tiny"})  # the card names the repo
    assert same_contents(tmp_path / "uploaded", tmp_path / "saved")
    assert same(outputs(LOADERS[kind].from_pretrained(tmp_path / "uploaded"), kind), outputs(model, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_saved_folders_carry_the_mixins_model_card(kind, tmp_path):
    """huggingface_hub's mixin writes a model card README.md beside the files, with Tessera's metadata; a
    pipeline writes one for itself and one per part, and no config.json of its own (pipeline.json says it all)."""
    build(kind, 0).save_pretrained(tmp_path / "saved")
    cards = sorted(p.relative_to(tmp_path / "saved").as_posix() for p in (tmp_path / "saved").rglob("README.md"))
    assert cards == (["README.md", "prior/README.md", "tokenizer/README.md"] if kind == "pipeline" else ["README.md"])
    card = huggingface_hub.ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.library_name == "tessera" and "tessera" in card.data.tags
    assert (tmp_path / "saved" / "config.json").is_file() == (kind != "pipeline")


def test_published_tokenizers_convert_from_repo_ids_fetching_only_what_they_need(tmp_path, offline_cache):
    """Conversion by repo id through the offline cache: a diffusers repo keeping its VQModel in vqvae/ (as
    amused/amused-256), a LlamaGen .pt named in its repo, and a sharded Janus model whose cache holds only the
    tokenizer's shard (fetching any other file would fail offline)."""
    import json

    from safetensors.torch import save_file

    from tests.test_conversion import diffusers_reference, janus_reference, llamagen_state_dict
    from tokenizer.conversion import convert_tokenizer

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def same_codes_and_images(a: VQGAN, b: VQGAN) -> bool:
        with torch.no_grad():
            return torch.equal(a.encode(x), b.encode(x)) and torch.equal(a.decode(a.encode(x)), b.decode(b.encode(x)))

    diffusers_reference("attention").save_pretrained(tmp_path / "amused" / "vqvae")
    add_to_cache(offline_cache, "tessera-test/amused", tmp_path / "amused", MAIN, "main")
    assert same_codes_and_images(convert_tokenizer("diffusers", "tessera-test/amused", subfolder="vqvae"),
                                 convert_tokenizer("diffusers", tmp_path / "amused", subfolder="vqvae"))

    (tmp_path / "llamagen").mkdir()
    torch.save({"model": llamagen_state_dict(janus_reference("one-block"))}, tmp_path / "llamagen" / "vq_ds16_c2i.pt")
    add_to_cache(offline_cache, "tessera-test/llamagen", tmp_path / "llamagen", MAIN, "main")
    assert same_codes_and_images(
        convert_tokenizer("llamagen", "tessera-test/llamagen", filename="vq_ds16_c2i.pt", local_files_only=True),
        convert_tokenizer("llamagen", tmp_path / "llamagen" / "vq_ds16_c2i.pt"))

    janus = tmp_path / "janus"
    janus.mkdir()
    save_file({f"model.vqmodel.{k}": v.contiguous() for k, v in janus_reference("one-block").state_dict().items()},
              str(janus / "model-00002-of-00002.safetensors"))
    (janus / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "model.language_model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        **{f"model.vqmodel.{k}": "model-00002-of-00002.safetensors" for k in janus_reference("one-block").state_dict()}}}))
    (janus / "config.json").write_text(json.dumps({"vq_config": {"channel_multiplier": [1, 2, 2]},
                                                  "vision_config": {"image_size": 16, "patch_size": 4}}))
    add_to_cache(offline_cache, "tessera-test/janus", janus, MAIN, "main")
    assert same_codes_and_images(convert_tokenizer("janus", "tessera-test/janus"), convert_tokenizer("janus", janus))
    with pytest.raises(ValueError, match="filename"):
        convert_tokenizer("llamagen", "tessera-test/llamagen")


def test_a_llamagen_prior_converts_from_a_hub_repo(tmp_path, offline_cache):
    """tessera convert --source llamagen-gpt REPO --filename c2i_..._64.pt: the file from the (offline) Hub cache,
    the same prior as from the local file."""
    from safetensors.torch import load_file as read

    from pipelines.commands import convert
    from prior import GPTPrior
    from tests.test_llamagen_prior import FIXTURE, imagenet_prior_file

    (tmp_path / "repo").mkdir()
    imagenet_prior_file(read(str(FIXTURE)), tmp_path / "repo")  # c2i_tiny_64.pt
    add_to_cache(offline_cache, "tessera-test/llamagen-gpt", tmp_path / "repo", MAIN, "main")
    convert.main(["--source", "llamagen-gpt", "tessera-test/llamagen-gpt", "--filename", "c2i_tiny_64.pt",
                  "--num_heads", "2", "--local_files_only", "--output_dir", str(tmp_path / "from-hub")])
    convert.main(["--source", "llamagen-gpt", str(tmp_path / "repo" / "c2i_tiny_64.pt"), "--num_heads", "2",
                  "--output_dir", str(tmp_path / "from-file")])
    hub, local = (read(str(tmp_path / name / "model.safetensors")) for name in ("from-hub", "from-file"))
    assert hub.keys() == local.keys() and all(torch.equal(hub[k], local[k]) for k in hub)
    assert GPTPrior.from_pretrained(tmp_path / "from-hub").converted_from["path"] == "tessera-test/llamagen-gpt"
    with pytest.raises(ValueError, match="give filename"):
        convert.main(["--source", "llamagen-gpt", "tessera-test/llamagen-gpt", "--output_dir", str(tmp_path / "x")])
