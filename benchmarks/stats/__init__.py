"""Statistics of a loss comparison: several seeds per loss, one final test evaluation per seed.

Pure functions on plain Python data (numpy, scipy and statsmodels; no torch), returning dicts of
plain ``int``/``float``/``None`` values that ``json.dump`` writes as they are.

- ``t_interval`` (intervals.py): mean and t confidence interval of one loss's metric over seeds.
- ``paired_t_test``, ``mcnemar_test``, ``paired_bootstrap``, ``compare_runs`` (paired.py): two
  losses on the same seeds and queries.
- ``holm`` (holm_correction.py): Holm's step-down correction over a family of p-values.
- significance.py: the intervals and tests a comparison's report shows.
- convergence.py: how fast each loss reaches a level of R@1.
"""

from benchmarks.stats.holm_correction import holm
from benchmarks.stats.intervals import t_interval
from benchmarks.stats.paired import compare_runs, mcnemar_test, paired_bootstrap, paired_t_test

__all__ = [
    "compare_runs",
    "holm",
    "mcnemar_test",
    "paired_bootstrap",
    "paired_t_test",
    "t_interval",
]
