"""Score terms summed onto the learned score: one typed interface (:mod:`.base`), each term fits, serialises
and binds itself; the runtime sums the list a bundle records (:class:`ScoreTerms`).

Terms, in the order they are summed: ``excluded_volume`` (:mod:`.excluded_volume`), ``bond_prior``
(:mod:`.bonds`), ``pair_correction`` (:mod:`.pair_correction`), ``angle_correction`` (:mod:`.angles`).
"""
from . import angles, bonds, excluded_volume, pair_correction  # noqa: F401  (registers the terms)
from .base import SCORE_TERMS, ScoreTerm, ScoreTerms, pair_key, register_term, validate_score_terms

__all__ = ["ScoreTerm", "ScoreTerms", "SCORE_TERMS", "register_term", "validate_score_terms", "pair_key"]
