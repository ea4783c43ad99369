# The two commands (README): `make run` and `make test`. Both create .venv when missing and are
# safe to rerun (installs are skipped when pyproject.toml has not changed).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder --durations=25

.PHONY: run test test-slow bench install clean-venv archive

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

# The default experiment on CPU: train the quadratic net, measure its error rate per sphere.
run: $(VENV)/.installed
	JAX_PLATFORMS=cpu $(BIN)/spheres run sphere-quadratic --preset quick --out runs/make-run

test: $(VENV)/.installed-test
	JAX_PLATFORMS=cpu $(BIN)/python -m pytest $(PYTEST_ARGS)

# Paper-scale checks (minutes to hours): skipped by `make test`.
test-slow: $(VENV)/.installed-test
	JAX_PLATFORMS=cpu $(BIN)/python -m pytest -m slow

# Side-by-side speed benchmarks (issue 8): installs the bench extra (a CPU build of torch 2.13.0;
# newer torch pulls GBs of CUDA wheels; torchattacks without its deps so torch stays), then runs them
# all and writes benchmarks/results/<machine>-<date>.json and latest.md. BENCH_ARGS="--size tiny" etc.
bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps torchattacks
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Keep a finished run's record in the repository: everything but checkpoints and arrays over 2 MB
# goes to docs/runs/<name>/, where `spheres report docs/runs/<name>` and `spheres show` read it.
archive:
	@test -n "$(RUN)" -a -f "$(RUN)/summary.json" || { echo "usage: make archive RUN=runs/<finished run>"; exit 2; }
	@dest=docs/runs/$$(basename $(RUN)); mkdir -p $$dest; \
	  (cd $(RUN) && find . -type d -name ckpt -prune -o -type f ! \( -name '*.npz' -size +2M \) -print) | \
	  while read f; do mkdir -p "$$dest/$$(dirname $$f)"; cp "$(RUN)/$$f" "$$dest/$$f"; done; \
	  echo "archived $(RUN) -> $$dest ($$(du -sh $$dest | cut -f1))"

clean-venv:
	rm -rf $(VENV)
