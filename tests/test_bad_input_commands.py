"""Each class of bad input, given to the command lines as a user would: one `error: ...` line and exit status 2
(Ctrl-C: one line and 130), never a traceback, and no train_config.json left behind by a run that never started.
The processes run side by side: their imports dominate (docs/bad-input.md lists what each class gets)."""

import json
import shutil
import signal
import time

import pytest

from pipelines.training import train_tokenizer
from pipelines.training_run import find_checkpoint
from tests.conftest import make_codes, start_script, tiny_prior_for, tiny_vqgan, write_images
from tests.test_training import tiny_train_config


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """The good and bad things the probes point at."""
    root = tmp_path_factory.mktemp("bad")
    paths = {"root": root, "images": write_images(root / "images", 4)}
    (root / "unreadable").mkdir()
    for i in range(3):
        (root / "unreadable" / f"{i}.png").write_bytes(b"not a png")
    paths["strays"] = write_images(root / "strays", 2, classes=("cat", "dog"))
    write_images(root / "strays", 1)
    tokenizer = tiny_vqgan()
    tokenizer.save_pretrained(root / "tok")
    tiny_prior_for(tokenizer).save_pretrained(root / "prior")
    for name, text in (("tok-not-json", "{not json"), ("tok-wrong-type", None)):
        shutil.copytree(root / "tok", root / name)
        config = json.loads((root / "tok" / "config.json").read_text())
        config["channels"] = "wide"
        (root / name / "config.json").write_text(text or json.dumps(config))
    for name, edit in (("codes-count", lambda m: m.update(count=m["count"] + 1)),
                       ("codes-no-grid", lambda m: m.pop("grid_shapes"))):
        make_codes(root / name)
        manifest = json.loads((root / name / "manifest.json").read_text())
        edit(manifest)
        (root / name / "manifest.json").write_text(json.dumps(manifest))
    run = root / "run"  # a finished two-step run with a checkpoint
    train_tokenizer(tiny_train_config(paths["images"], run, max_steps=2, ema_decay=0.0))
    shutil.copytree(run, root / "run-bad-bin")
    (find_checkpoint(root / "run-bad-bin", "latest") / "optimizer.bin").write_bytes(b"garbage")
    (root / "a-file").write_text("")
    (root / "wrong-type.json").write_text(json.dumps({"batch_size": "32"}))
    return paths


# A test never reaches the network: the Hub data set probe is the offline case the issue names.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TINY = ["--resolution", "16", "--channels", "8", "--z_channels", "8", "--codebook_size", "16", "--code_dim", "4",
        "--batch_size", "2", "--perceptual_loss", "none", "--disc_layers", "2", "--num_workers", "0", "--no_progress"]


def probes(root) -> list[tuple[str, list[str], str]]:
    """(class of bad input, argv, what its one error line must say)."""
    images, out = root / "images", root / "out"
    return [
        ("non-finite flag", ["train_tokenizer.py", "--dataset", images, "--output_dir", out / "nan", *TINY,
                             "--beta", "nan"], "model.quantizer.beta=nan: expected a finite number"),
        ("only unreadable images", ["train_tokenizer.py", "--dataset", root / "unreadable", "--output_dir",
                                    out / "unreadable", *TINY], "no readable image in folder"),
        ("absurd resolution", ["train_tokenizer.py", "--dataset", images, "--output_dir", out / "huge",
                               "--resolution", "1000000"], "resolution must be a positive int of at most 8192"),
        ("Hub data set offline", ["train_tokenizer.py", "--dataset", "nobody/no-such-images", "--output_dir",
                                  out / "hub", *TINY], "could not be loaded: Couldn't reach 'nobody/no-such-images'"),
        ("non-finite sampling setting", ["sample.py", "--tokenizer", root / "tok", "--prior", root / "prior",
                                         "--guidance_scale", "nan", "--out", out / "g.png"], "guidance_scale=nan"),
        ("manifest with a wrong count", ["train_prior.py", "--codes", root / "codes-count", "--output_dir",
                                         out / "count", "--size", "tiny"], "but its shards hold 25 images"),
        ("manifest without grid_shapes", ["train_prior.py", "--codes", root / "codes-no-grid", "--output_dir",
                                          out / "grid", "--size", "tiny"], "grid_shapes=None"),
        ("config.json not JSON", ["evaluate.py", "--tokenizer", root / "tok-not-json", "--dataset", images,
                                  "--split", "train", "--no_rfid"], "tok-not-json/config.json is not valid JSON"),
        ("config.json of the wrong type", ["evaluate.py", "--tokenizer", root / "tok-wrong-type", "--dataset", images,
                                           "--split", "train", "--no_rfid"], "config.json: autoencoder.channels='wide'"),
        ("--config field of the wrong type", ["train_tokenizer.py", "--config", root / "wrong-type.json", "--dataset",
                                              images, "--output_dir", out / "cfg"], "batch_size='32': expected an integer"),
        ("--out under a file", ["sample.py", "--tokenizer", root / "tok", "--prior", root / "prior",
                                "--out", root / "a-file" / "g.png"], "a-file is a file, not a folder"),
        ("resume with another architecture", ["train_tokenizer.py", "--config", root / "run" / "train_config.json",
                                              "--resume_from_checkpoint", "latest", "--channels", "16"],
         "does not fit this run's models"),
        ("unreadable checkpoint file", ["train_tokenizer.py", "--config", root / "run-bad-bin" / "train_config.json",
                                        "--output_dir", root / "run-bad-bin", "--resume_from_checkpoint", "latest"],
         "optimizer.bin cannot be read"),
        ("count out of range", ["evaluate.py", "--tokenizer", root / "tok", "--dataset", images, "--num_images", "0"],
         "argument --num_images: '0': expected an integer >= 1"),
        ("held-out split of a flat folder", ["evaluate.py", "--tokenizer", root / "tok", "--dataset", images,
                                             "--split", "test", "--no_rfid"], "has no train/ and test/ sub-folders"),
        ("stray top-level image", ["train_tokenizer.py", "--dataset", root / "strays", "--output_dir", out / "strays",
                                   *TINY], "holds class folders and 1 image files at its top"),
    ]


def test_every_class_of_bad_input_ends_in_one_error_line(inputs):
    root = inputs["root"]
    running = [(name, argv, needle, start_script(*argv, env=OFFLINE)) for name, argv, needle in probes(root)]
    for name, argv, needle, proc in running:
        _, stderr = proc.communicate(timeout=300)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and "Traceback" not in stderr, (name, stderr[-3000:])
        assert lines[-1].startswith(("error: ", argv[0].replace(".py", ".py: error: "))), (name, lines[-3:])
        assert needle in lines[-1], (name, lines[-1])
    for folder in (root / "out").iterdir():  # no run started, so none wrote its config
        assert not (folder / "train_config.json").exists(), folder


def test_ctrl_c_ends_training_in_one_line_saying_how_to_resume(inputs, tmp_path):
    out = tmp_path / "run"
    proc = start_script("train_tokenizer.py", "--dataset", inputs["images"], "--output_dir", out, *TINY,
                        "--max_steps", "100000", "--log_every", "1")
    # A fresh clone compiles every import on its first run, so the first step can take minutes on a busy machine;
    # the signal must land during training, not during imports (which end with a bare "interrupted").
    deadline = time.time() + 600
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None and (out / "metrics.jsonl").is_file(), "training never logged a step"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert lines[-1] == ("interrupted: run the same command with --resume_from_checkpoint latest to continue "
                         "from the last checkpoint"), stderr[-3000:]
