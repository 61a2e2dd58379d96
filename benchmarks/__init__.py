"""The benchmark: HTL beside PML's losses at the same budget (python -m benchmarks.compare).

Data flows one way: a RunConfig (config.py, from the command line in cli.py) names
the data set (data/), the trunk (models/) and the losses (variants.py); each
(loss, seed) run is trained (training/), on the images or on a frozen trunk's
cached features of them (features/), and scored (evaluation/); the runs are
compared (stats/) and written out (report/). runner.py drives one comparison;
tune.py searches hyper-parameters first when asked.

To add a loss: one entry in ``variants.VARIANTS`` (and, to tune it, a search space
in ``tune.SEARCH_SPACES``). To add a data set: one module in data/ that declares a
``DATASET``, named in ``data._MODULES``. PML 2's trainer and logging are reached
through pml_compat.py only.
"""
