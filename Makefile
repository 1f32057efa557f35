# The README's two quick-start commands are `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: install data demo test
install:
	bash tools/install.sh

data: install
	$(PY) tools/data/make_small_datasets.py --out data/small

# ResNet-18 on the digits-CUB data with rhoSIM + VCReg on every block (a few CPU minutes).
demo: data
	$(PY) tools/train.py configs/demo/resnet18_digits_cub_rhosim_vcreg.py

# pytest exits non-zero when no test is collected (exit 5), so this fails then too.
test: data
	$(PY) -m pytest -q -ra tests
