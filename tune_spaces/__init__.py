"""Search spaces and schedulers for sigma (GNT), epsilon and restart iterations (ANT)."""

from tune_spaces.spaces import SPACES, SearchSpace, asha_scheduler, grid_values, param_space

__all__ = ["SPACES", "SearchSpace", "asha_scheduler", "grid_values", "param_space"]
