"""Hydra plugins of tl-experiments (Hydra finds plugins only in the hydra_plugins package)."""
