# Two entry points for a fresh machine with only Python and pip:
#   make demo   -- installs into .venv, runs the whole two-stage flow on the built-in emoji set
#   make test   -- installs into .venv (with the dev extra) and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench bench-tokenizer bench-tokenize bench-prior bench-pipeline bench-recipe bench-demo bench-table bench-quantizers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --output_dir outputs/demo

test: $(STAMP)
	$(PY) -m pytest tests

# Benchmarks print JSON and also write it to outputs/; Fashion-MNIST comes from the Debian package
# dataset-fashion-mnist (apt-get install dataset-fashion-mnist).
bench: bench-tokenizer bench-tokenize bench-prior bench-pipeline bench-recipe bench-demo

bench-tokenizer: $(STAMP)
	$(PY) benchmarks/bench_tokenizer.py --no_progress --output_json outputs/bench_tokenizer.json

bench-tokenize: $(STAMP)
	$(PY) benchmarks/bench_tokenize.py --output_json outputs/bench_tokenize.json

bench-prior: $(STAMP)
	$(PY) benchmarks/bench_prior.py --output_json outputs/bench_prior.json

# The class-conditional Fashion-MNIST flow under the protocol (about 70 min of training, 40 of evaluation), then
# its sampling sweep
bench-pipeline: $(STAMP)
	$(PY) benchmarks/bench_pipeline.py --output_dir outputs/pipeline-fmnist --no_progress
	$(PY) benchmarks/bench_generation.py --pipeline outputs/pipeline-fmnist/pipeline --dataset fashion-mnist \
		--class_labels uniform --settings top-p-0.9,guidance-1.5,guidance-3 --output_dir outputs/sweep-fmnist --no_progress

# The VQ-GAN recipe against plain VQ-VAE and VQ-VAE + perceptual, equal steps and equal time (hours on 2 cores)
bench-recipe: $(STAMP)
	$(PY) benchmarks/bench_recipe.py --dataset emoji --steps 400 --output_dir outputs/recipe-emoji-400 --no_progress
	$(PY) benchmarks/bench_recipe.py --dataset fashion-mnist --steps 400 --equal_time vqvae --output_dir outputs/recipe-fmnist-400-defaults --no_progress

# The demo's recipe against the one before the recipe work and a VQ-VAE at equal time, 2,000 samples each (~75 min)
bench-demo: $(STAMP)
	$(PY) benchmarks/bench_demo.py --output_dir outputs/bench-demo --no_progress

# Issue 30's table: whole Fashion-MNIST recipes (tokenizer, tokenizing, prior; <= 2 h of training each) under the
# protocol, one row per sampling setting, beside Dai & Wipf 2019's (outputs/bench-table/results.json)
bench-table: $(STAMP)
	$(PY) benchmarks/bench_table.py --recipes f2-gpt-small-long --no_progress --output_dir outputs/bench-table

# VQ, FSQ and LFQ at equal bits per code and equal steps, on both data sets (about 45 min)
bench-quantizers: $(STAMP)
	$(PY) benchmarks/bench_quantizers.py --dataset fashion-mnist --bits 10 --steps 400 --output_dir outputs/quantizers-fmnist --no_progress
	$(PY) benchmarks/bench_quantizers.py --dataset emoji --bits 8 --steps 400 --output_dir outputs/quantizers-emoji --no_progress

clean:
	rm -rf $(VENV) outputs
