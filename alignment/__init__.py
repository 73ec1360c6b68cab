"""Alignment research toolkit: methods, optimizers and evaluation for LLM alignment at scale."""

__version__ = "0.1.0"
