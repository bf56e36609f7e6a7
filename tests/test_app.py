"""The web page of `tessera app`: its functions on one- and two-level pipelines and a vae, and the page itself in a
real browser (headless Debian chromium driven through Selenium; skipped, with the reason, where none is installed)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import ImageGenerationPipeline
from pipelines.app import ANY_CLASS, UNCONDITIONAL, class_choices, code_colours, complete, generate, reconstruct
from tests.conftest import tiny_prior_for, tiny_vqgan
from tests.test_hierarchical_pipeline import priors_for
from tests.test_vae import tiny_vae
from tests.test_vqvae2 import tiny_vqvae2

PICTURE = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))


@pytest.fixture
def pipe() -> ImageGenerationPipeline:
    tokenizer = tiny_vqgan(16, codebook_size=16)
    return ImageGenerationPipeline(tokenizer, tiny_prior_for(tokenizer, num_classes=2, class_names=("cats", "dogs")))


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"))


def test_generate_gives_the_grid_and_the_first_images_code_map(pipe):
    grid, maps = generate(pipe, "dogs", 3, seed=5, temperature=0.9, top_k=8, top_p=0.95, guidance=2.0)
    # Three 16 px images side by side, each upscaled 8x to 128 px, with 2 px padding (also upscaled).
    assert grid.size == ((3 * 16 + 4 * 2) * 8, (16 + 2 * 2) * 8)
    out = pipe(3, class_labels="dogs", temperature=0.9, top_k=8, top_p=0.95, guidance_scale=2.0,
               generator=torch.Generator().manual_seed(5), output_type="pt", progress=False)
    assert len(maps) == 1 and maps[0].size == (256, 256)
    colours = code_colours(16)[out.indices[0].numpy()]  # (4, 4, 3): the map is these cells, 64 px each
    assert np.array_equal(pixels(maps[0])[::64, ::64], colours)
    again, _ = generate(pipe, "dogs", 3, seed=5, temperature=0.9, top_k=8, top_p=0.95, guidance=2.0)
    assert np.array_equal(pixels(grid), pixels(again))  # the seed fixes the page's samples


def test_code_colours_tell_neighbouring_codes_apart():
    colours = code_colours(1024).astype(int)
    assert len({tuple(c) for c in colours[:64]}) == 64
    assert np.abs(np.diff(colours, axis=0)).sum(axis=1).min() > 30


def test_class_menu_offers_names_or_unconditional(pipe):
    assert class_choices(pipe) == [ANY_CLASS, "cats", "dogs"]
    tokenizer = tiny_vqgan(16, codebook_size=16)
    assert class_choices(ImageGenerationPipeline(tokenizer, tiny_prior_for(tokenizer))) == [UNCONDITIONAL]
    grid, _ = generate(pipe, ANY_CLASS, 4, seed=0)  # every class in turn
    assert grid.size[0] == (4 * 16 + 5 * 2) * 8


def test_reconstruct_shows_the_input_its_reconstruction_and_codes(pipe):
    seen, rebuilt, maps = reconstruct(pipe, PICTURE)
    codes = pipe.tokenizer.encode(pipe.image_tensor(PICTURE, 1))
    expected = ((pipe.tokenizer.decode(codes).clamp(-1, 1) + 1) / 2)[0].permute(1, 2, 0).detach().numpy()
    shown = pixels(rebuilt)[2 * 8 :: 8, 2 * 8 :: 8][:16, :16] / 255  # undo the padding and the 8x upscale
    assert np.abs(shown - expected).max() <= 1 / 255 + 1e-6
    assert seen.size == rebuilt.size and len(maps) == 1
    assert np.array_equal(pixels(maps[0])[::64, ::64], code_colours(16)[codes[0].numpy()])


def test_complete_keeps_the_pictures_first_code_rows(pipe, monkeypatch):
    calls = []
    real_call = ImageGenerationPipeline.__call__
    monkeypatch.setattr(ImageGenerationPipeline, "__call__",
                        lambda self, *a, **k: calls.append(k) or real_call(self, *a, **k))
    grid = complete(pipe, PICTURE, 2, "cats", 2, seed=1)
    assert grid.size == ((2 * 16 + 3 * 2) * 8, (16 + 2 * 2) * 8)
    assert calls[0]["prefix"] == (PICTURE, 2) and calls[0]["class_labels"] == "cats"


def test_a_two_level_pipeline_shows_both_code_grids():
    tokenizer = tiny_vqvae2()
    pipe = ImageGenerationPipeline(tokenizer, *priors_for(tokenizer, "gpt"))
    _, maps = generate(pipe, "circle", 2, seed=0)
    assert [m.size for m in maps] == [(256, 256), (256, 256)]  # the 2x2 top grid and the 4x4 bottom grid
    assert len(reconstruct(pipe, PICTURE)[2]) == 2
    complete(pipe, PICTURE, 1, "square", 1, seed=0)


def test_a_vae_pipeline_takes_only_the_temperature():
    pipe = ImageGenerationPipeline(tiny_vae())
    assert class_choices(pipe) == [UNCONDITIONAL]
    grid, maps = generate(pipe, UNCONDITIONAL, 2, seed=0, temperature=0.5, top_k=5, top_p=0.5, guidance=3.0)
    assert maps == [] and grid.size[0] == (2 * 16 + 3 * 2) * 8  # the prior's controls are not passed on
    assert reconstruct(pipe, PICTURE)[2] == []
    with pytest.raises(ValueError, match="no prior to complete"):
        complete(pipe, PICTURE, 1, UNCONDITIONAL, 1, seed=0)


# --- the page in a browser ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tessera app exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def test_the_page_generates_images_in_a_real_browser(pipe, tmp_path):
    pytest.importorskip("gradio", reason="the page needs Gradio: pip install -e '.[app]'")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs Selenium (the dev extra)")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("no browser: apt-get install chromium chromium-driver (.ci/run does where it runs as root)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pipe.save_pretrained(tmp_path / "pipe")
    port = _free_port()
    command = [str(Path(sys.executable).parent / "tessera"), "app", "--pipeline", str(tmp_path / "pipe"),
               "--port", str(port)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "app.log"
    with log.open("w") as output:  # a file, not a pipe: nobody reads it while the page runs
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(argument)
    browser = None
    try:
        _wait_for(f"http://127.0.0.1:{port}/", proc, log, timeout=180)
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a driver
        browser = webdriver.Chrome(service=Service(driver_path), options=options)
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 120)
        wait.until(lambda b: b.find_elements(By.ID, "generate"))
        assert "2 classes: cats, dogs" in browser.page_source  # the pipeline's card summary heads the page
        browser.find_element(By.ID, "generate").click()
        images = wait.until(lambda b: [i for i in b.find_elements(By.CSS_SELECTOR, "#samples img")
                                       if b.execute_script("return arguments[0].naturalWidth", i) > 0])
        assert images, "no sample grid appeared"
        # The grid of 16 images, 4 rows of 8 at 8x: as wide as 8 images with their padding.
        assert browser.execute_script("return arguments[0].naturalWidth", images[0]) == (8 * 16 + 9 * 2) * 8
        if os.environ.get("TESSERA_SCREENSHOT"):
            browser.save_screenshot(os.environ["TESSERA_SCREENSHOT"])
    finally:
        if browser is not None:
            browser.quit()
        proc.terminate()
        proc.wait(timeout=30)
