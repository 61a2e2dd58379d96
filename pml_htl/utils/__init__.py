"""pytorch-metric-learning's ``utils``, with Recall@K added to its accuracy calculator.

``from pml_htl.utils import common_functions as c_f`` and the like give PML's
own modules; ``pml_htl.utils.accuracy_calculator`` is PML's plus
``RecallAtKAccuracyCalculator`` and ``make_accuracy_calculator``;
``pml_htl.utils.faiss_device`` puts faiss's k-NN and k-means on the GPU of
CUDA embeddings when faiss has GPU support.
"""

from pytorch_metric_learning.utils import *  # noqa: F401,F403

from .._pml_aliases import register_submodules
from . import accuracy_calculator, faiss_device  # noqa: F401

register_submodules(__name__, "pytorch_metric_learning.utils")
