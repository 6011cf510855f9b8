"""Only the optional C extension; the project's metadata is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and the
collector reads protobuf with upb alone (collector/otlp_reader.py).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("collector._otlp_reader", ["collector/_otlp_reader.c"],
                             extra_compile_args=["-O2"], optional=True)])
