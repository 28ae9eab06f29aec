from setuptools import setup

# The C kernels are compiled by cffi; everything else is declared in pyproject.toml.
# cffi compiles against CPython's stable ABI (pynn/_pynn.abi3.so), so the wheel is tagged abi3:
# one wheel serves every CPython from 3.9 on.
setup(cffi_modules=["pynn/_build.py:ffibuilder"],
      options={"bdist_wheel": {"py_limited_api": "cp39"}})
