"""Quantization methods: one typed, versioned config per method, registered by name.

A family is one module here (``floats``, ``int8``, ``int4``); recipes (``recipe``) chain method
configs; the passes that carry them out live in :mod:`engines.passes`.
"""

from engines.methods.configs import MethodConfig
from engines.methods.recipe import Recipe, parse_recipe
from engines.methods.registry import MethodSpec, all_methods, method_spec, register_method, spec_for_config

__all__ = ["MethodConfig", "MethodSpec", "Recipe", "all_methods", "method_spec", "parse_recipe",
           "register_method", "spec_for_config"]
