# The two commands (README): `make run` and `make test`. Both create .venv when missing and are
# safe to rerun (installs are skipped when pyproject.toml has not changed).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# --max-worker-restart=0: a worker that dies (a segfault, pytest-timeout) ends the run at once with its
# test named. xdist 3.8's loadfile scheduler deadlocks when it replaces a crashed worker (it requeues
# the files that worker had finished; pytest-xdist#1378), which turned one crash into a CI timeout.
PYTEST_ARGS ?= -n 2 --dist loadfile --max-worker-restart=0 --durations=25

.PHONY: mutate mutate-list run test test-slow test-full-data check-fresh bench docs install clean-venv archive

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

# Side-by-side speed benchmarks: installs the bench extra (PyTorch, jaxopt; see pyproject.toml for
# the CPU torch pin), runs them all and writes benchmarks/results/<machine>-<date>.json and
# latest.md. BENCH_ARGS="--size tiny" etc.
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Optional checks of the full Fashion-MNIST (tests marked full_data; the default suite uses the sample
# shipped in spheres/sample_data). Needs the data: Debian's dataset-fashion-mnist or SPHERES_DATA=DIR.
test-full-data: $(VENV)/.installed-test
	JAX_PLATFORMS=cpu $(BIN)/python -m pytest -m full_data

# What a newcomer sees: clone the committed HEAD into a temporary directory, make a new venv there,
# run `make run` and `make test`. Uncommitted changes are not included.
check-fresh:
	bash tools/check-fresh

# The generated pages: docs/results/<paper>.md from the archived runs in docs/runs/, and
# docs/benchmarks.md from benchmarks/results/*.json. tests/core/test_docs.py checks they are current.
docs: $(VENV)/.installed
	for p in gilmer szegedy goodfellow; do \
	  $(BIN)/spheres report docs/runs --paper $$p --out docs/results/$$p.md || exit 1; done
	$(BIN)/python -m benchmarks.report --page docs/benchmarks.md

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

# Mutation testing (cosmic-ray, the `mutate` extra; not part of `make test`): one module per run, in
# a scratch copy under .mutate/ with the few tests that exercise it (tools/mutate.py lists them).
#   make mutate MODULE=theory/binomial.py     (prints the docs/mutation.md table row)
#   make mutate-list                          (the modules in scope and their tests)
# Surviving mutants: .mutate/<module>/survivors.txt. Runs one mutant at a time.
$(VENV)/.installed-mutate: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,mutate]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-test

mutate: $(VENV)/.installed-mutate
	@test -n "$(MODULE)" || { echo "usage: make mutate MODULE=attacks/pgd.py (make mutate-list)"; exit 2; }
	$(BIN)/python tools/mutate.py $(MUTATE_ARGS) $(MODULE)

mutate-list:
	@$(BIN)/python tools/mutate.py --list
