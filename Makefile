# Two commands on a fresh machine: `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
AI2TEXT := $(VENV)/bin/ai2text
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
SYSTEM_TOOLS := espeak-ng ffmpeg sox
BROWSER_TOOLS := chromium chromium-driver curl
DEMO_DATA := data/demo
DEMO_SET := data/processed/demo
DEMO_RUN := runs/demo
STREAM_RUN := runs/streaming
# KenLM's build_binary, compiled from its PyPI source (nothing packages it): `lm build` then writes lm.bin too.
KENLM_TOOL := .cache/kenlm/build_binary
export AI2TEXT_BUILD_BINARY := $(abspath $(KENLM_TOOL))
export HF_HUB_OFFLINE := 1
# pip installs without compiling (--no-compile: ~75 s of byte-compiling torch & co. on 2 cores); Python then
# compiles and caches only the modules it imports, once, which it cannot do when this is set.
unexport PYTHONDONTWRITEBYTECODE
export TOKENIZERS_PARALLELISM := false

.PHONY: install system-deps browser-deps apt-tools kenlm demo test test-slow lint bench bench-real bench-streaming clean

install: $(STAMP)

# torch's CUDA build (what plain pip takes here, and on most Linux machines) fills about 7 GB: say so
# before pip starts rather than stop half-way through an install with "No space left on device".
VENV_GB := 7
$(STAMP): setup.cfg pyproject.toml
	@mkdir -p $(VENV); free=$$(df -Pk $(VENV) | awk 'NR == 2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt $(VENV_GB) ]; then \
		echo "make install: $$free GB free under $(abspath $(VENV)), the virtual environment needs about $(VENV_GB) GB." >&2; \
		echo "Free some disk space, or put the environment elsewhere: make VENV=/path/with/space ..." >&2; \
		exit 1; \
	fi
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --no-compile -e '.[dev]'
	touch $(STAMP)

# Debian packages the product uses: espeak-ng (synthetic corpus), ffmpeg (the transformers
# pipeline decodes file paths with it), sox; chromium and chromium-driver (selenium's chromedriver)
# only for the slow tests that render pages. A tool is a command or, failing that, an installed package.
system-deps:
	@$(MAKE) --no-print-directory apt-tools TOOLS="$(SYSTEM_TOOLS)"

browser-deps:
	@$(MAKE) --no-print-directory apt-tools TOOLS="$(BROWSER_TOOLS)"

apt-tools:
	@missing=""; for tool in $(TOOLS); do command -v $$tool >/dev/null || dpkg -s $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

kenlm: $(KENLM_TOOL)

$(KENLM_TOOL): | install
	$(AI2TEXT) lm install-kenlm --output $@

$(DEMO_DATA)/metadata.csv: ai2text_hf/resources/sentences_vi.txt ai2text_hf/data/synth.py | install system-deps
	$(AI2TEXT) synth --output $(DEMO_DATA)

# The demo trains with waveform augmentation, so the dataset keeps audio (--on-the-fly); its feature settings
# are a function of the feature extractor's code too: prepare again when it changes. prepare leaves an
# up-to-date folder untouched, so touch the manifest: otherwise every later make would retrain.
$(DEMO_SET)/manifest.json: $(DEMO_DATA)/metadata.csv ai2text_hf/feature_extraction_ai2text.py
	$(AI2TEXT) prepare --csv $(DEMO_DATA)/metadata.csv --output $(DEMO_SET) --pitch --on-the-fly --overwrite
	touch $@

$(DEMO_RUN)/model/config.json: $(DEMO_SET)/manifest.json recipes/demo-cpu.yaml
	rm -rf $(DEMO_RUN)
	$(AI2TEXT) train --recipe recipes/demo-cpu.yaml --dataset $(DEMO_SET) --output-dir $(DEMO_RUN)

demo: install system-deps $(DEMO_RUN)/model/config.json
	$(AI2TEXT) evaluate --model $(DEMO_RUN)/model --dataset $(DEMO_SET) --split test --no-lm
	$(AI2TEXT) lm build --model $(DEMO_RUN)/model --text $(DEMO_DATA)/metadata.csv --splits train --order 3 --overwrite
	$(AI2TEXT) lm tune --model $(DEMO_RUN)/model --dataset $(DEMO_SET) --beam-width 16
	$(AI2TEXT) evaluate --model $(DEMO_RUN)/model --dataset $(DEMO_SET) --split test \
		--beam-width 50 --output $(DEMO_RUN)/eval/test-beam50-lm
	$(AI2TEXT) transcribe --model $(DEMO_RUN)/model --json $$(ls $(DEMO_DATA)/wavs/test/*.wav | head -n 2)
	@echo
	@echo "The demo model is in: $(DEMO_RUN)/model"

test: install system-deps $(KENLM_TOOL)
	$(PY) -m pytest -q -m "not slow"

# pytest exits 5 when no test is selected; that is not a failure here.
test-slow: install system-deps browser-deps $(KENLM_TOOL)
	$(PY) -m pytest -q -m slow || [ $$? -eq 5 ]

lint: install
	$(VENV)/bin/ruff check ai2text_hf tests scripts benchmarks

# The inference benchmarks measure the demo model, so `make bench` trains it first when it is missing.
bench: install system-deps $(DEMO_RUN)/model/config.json
	$(PY) -m benchmarks.run_all --model $(DEMO_RUN)/model --dataset $(DEMO_SET)

# Fine-tuning the demo model on ../shared's real syllables against training from scratch (about 45 minutes).
bench-real: install system-deps $(DEMO_RUN)/model/config.json
	$(PY) -m benchmarks.run_all --model $(DEMO_RUN)/model --only adaptation --output benchmarks/RESULTS-real.md

# The streaming recipe on the demo corpus (20 minutes of training), then its chunked CER, RTF and latency.
$(STREAM_RUN)/model/config.json: $(DEMO_SET)/manifest.json recipes/streaming-cpu.yaml
	rm -rf $(STREAM_RUN)
	$(AI2TEXT) train --recipe recipes/streaming-cpu.yaml --dataset $(DEMO_SET) --output-dir $(STREAM_RUN)

bench-streaming: install system-deps $(STREAM_RUN)/model/config.json
	$(PY) -m benchmarks.run_all --only streaming --output benchmarks/RESULTS-streaming.md

clean:
	rm -rf $(VENV) build *.egg-info .cache
