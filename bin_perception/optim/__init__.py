"""Optimisers of Wu (2019, ch. 3): the BPGrad solver, the exact branch-and-prune search, and L estimation."""

from .bpgrad import BPGrad
from .lipschitz import LipschitzEstimate, estimate_lipschitz
from .search import BPGradSearch, SearchHistory, SearchResult, sample_bound

__all__ = [
    "BPGrad",
    "BPGradSearch",
    "LipschitzEstimate",
    "SearchHistory",
    "SearchResult",
    "estimate_lipschitz",
    "sample_bound",
]
