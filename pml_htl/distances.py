"""PML's ``distances``, under pml_htl's name (the same module object)."""

from ._pml_aliases import stand_in_for

stand_in_for(__name__, "pytorch_metric_learning.distances")
