"""Only the optional C extension; the project's metadata is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and the
collector reads protobuf with upb alone (collector/otlp_reader.py).
"""
from setuptools import Extension, setup

# One module: _records.c reads the Span objects of _otlp_reader.c (collector/_otlp_reader.h).
SOURCES = ["collector/_otlp_reader.c", "collector/_records.c", "collector/_columns.c",
           "collector/_json.c"]

setup(ext_modules=[Extension("collector._otlp_reader", SOURCES, depends=["collector/_otlp_reader.h"],
                             extra_compile_args=["-O2"], optional=True)])
