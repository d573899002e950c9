"""modelyard: a multi-model AI gateway.

One gRPC API (``proto/modelyard/v1``) in front of many model backends. The
services live in subpackages (``registry``, ``selector``, ``hotswap``,
``gateway``, ``backends``); the hot decisions in the native module
``modelyard._native``.
"""

__version__ = "0.1.0"
