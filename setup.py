from setuptools import setup

# The C kernels are compiled by cffi; everything else is declared in pyproject.toml.
setup(cffi_modules=["pynn/_build.py:ffibuilder"])
