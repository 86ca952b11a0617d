# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned to the local CPU wheel; anything looser can pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
DEMO_DIR ?= demo-output
DEMO_EXAMS ?=  # empty: radsim demo's own default cohort size (DemoConfig)

# Prefect runs offline in its ephemeral mode (DESIGN §11).
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
unexport PREFECT_API_URL

.PHONY: demo test lint venv install clean bench

$(VENV)/bin/activate:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; radsim needs Python 3.11 (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" "setuptools>=68" wheel

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]" "$(TORCH)"
	@touch $@

venv install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/radsim demo --out $(DEMO_DIR) $(if $(DEMO_EXAMS),--exams $(DEMO_EXAMS))

lint: $(VENV)/.installed
	$(PY) -m ruff check .

# pytest exits 5 when it collects no tests: that is a failure, never a silent pass.
test: lint
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

bench: $(VENV)/.installed
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache build *.egg-info
