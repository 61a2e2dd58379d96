"""The losses the benchmark trains: one table, one entry per row of its results.

Everything but the loss (and the batch sampler HTL's method prescribes) is held
fixed, so an entry says only how its loss is built, from which hyper-parameters,
with which sampler, and whether it needs the class tree. Adding a loss is one
entry in ``VARIANTS``.

The baselines' hyper-parameters start from "A Metric Learning Reality Check"
(Musgrave et al. 2020), its CUB200 optimum; HTL uses the paper's beta. The
command line overrides them with ``--hp NAME.KEY=VALUE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

#: The four kinds of rows: the main comparison, the ablations of HTL's pieces, HTL
#: with one open choice of the paper set otherwise, and HTL with its margin or its
#: tree's data set otherwise (what HTL's behaviour depends on).
MAIN, ABLATION, CHOICE, DIAGNOSIS = "main", "ablation", "choice", "diagnosis"
#: Batch samplers: PML's MPerClassSampler, or HTL's anchor-neighbour sampler.
M_PER_CLASS, ANCHOR_NEIGHBOR = "m_per_class", "anchor_neighbor"
#: --sampler: each variant's own sampler, or one sampler for every loss.
SAMPLER_CHOICES = {"default": None, "mperclass": M_PER_CLASS, "anchor-neighbor": ANCHOR_NEIGHBOR}
#: How titles name the samplers.
SAMPLER_TITLES = {M_PER_CLASS: "MPerClass sampler", ANCHOR_NEIGHBOR: "A-N sampler"}

#: What a variant's options or HTL's tuned hyper-parameters may set besides the
#: loss's own arguments: the sampler's m and t, where the tree's statistics come
#: from (tree_view: "clean" evaluation views, "augmented" training views, or
#: "training", the training steps' own embeddings) and whether it is rebuilt every
#: epoch; and the iterations of the plain triplet loss the run starts with.
RUN_OPTIONS = (
    "classes_per_anchor",
    "samples_per_class",
    "statistics_from",
    "tree_view",
    "rebuild",
    "warm_start",
)
TREE_VIEWS = ("clean", "augmented", "training")


class LossParts(NamedTuple):
    """A built loss, its miner (or None) and, for a loss with parameters of its own,
    the (optimizer name, learning rate) that trains them (or None)."""

    loss: Any
    miner: Optional[Any] = None
    loss_optimizer: Optional[Tuple[str, float]] = None


#: Builds a loss from its keyword arguments and the arguments every loss gets.
LossBuilder = Callable[[Dict[str, Any], Dict[str, Any]], LossParts]


def _contrastive(args: Dict[str, Any], common: Dict[str, Any]) -> LossParts:
    from pml_htl import losses

    return LossParts(losses.ContrastiveLoss(**args, **common))


def _triplet(args: Dict[str, Any], common: Dict[str, Any]) -> LossParts:
    from pml_htl import losses

    return LossParts(losses.TripletMarginLoss(**args, **common))


def _margin(args: Dict[str, Any], common: Dict[str, Any]) -> LossParts:
    """The margin loss learns its beta, by plain SGD at its own rate beta_lr."""
    from pml_htl import losses

    beta_lr = args.pop("beta_lr")
    loss = losses.MarginLoss(learn_beta=True, **args, **common)
    return LossParts(loss, loss_optimizer=("metric_loss_optimizer", beta_lr))


def _multi_similarity(args: Dict[str, Any], common: Dict[str, Any]) -> LossParts:
    """The multi-similarity loss with its miner, whose epsilon is a hyper-parameter."""
    from pml_htl import losses, miners

    epsilon = args.pop("epsilon")
    loss = losses.MultiSimilarityLoss(**args, **common)
    return LossParts(loss, miner=miners.MultiSimilarityMiner(epsilon=epsilon))


def _htl(args: Dict[str, Any], common: Dict[str, Any]) -> LossParts:
    from pml_htl import losses

    return LossParts(losses.HierarchicalTripletLoss(**args, **common))


def _htl_plain_distances(args: Dict[str, Any], common: Dict[str, Any]) -> LossParts:
    """HTL's hinge on plain (not squared) distances, as the paper prints it."""
    from pytorch_metric_learning import distances

    from pml_htl import losses

    distance = distances.LpDistance(power=1)
    return LossParts(losses.HierarchicalTripletLoss(distance=distance, **args, **common))


@dataclass(frozen=True)
class Variant:
    """One row of the comparison.

    Args:
        title: the row's name in the tables and plots (with its own sampler).
        build: builds the loss (and miner) from its keyword arguments.
        hyperparameters: the defaults ``--hp`` overrides and ``--tune`` searches from.
        group: MAIN, ABLATION, CHOICE or DIAGNOSIS.
        options: HTL's one choice set otherwise (a loss argument or a RUN_OPTIONS key).
        sampler: M_PER_CLASS or ANCHOR_NEIGHBOR.
        uses_tree: whether the class tree is rebuilt every epoch for it (for its loss
            or for its sampler).
        loss_title: the title without the sampler, where the title names it (the
            title names the sampler --sampler chose instead).
    """

    title: str
    build: LossBuilder
    hyperparameters: Mapping[str, Any]
    group: str = MAIN
    options: Mapping[str, Any] = field(default_factory=dict)
    sampler: str = M_PER_CLASS
    uses_tree: bool = False
    loss_title: str = ""

    def title_with(self, sampler: str) -> str:
        """The title of this row drawing its batches from ``sampler``, which it names."""
        return f"{self.loss_title or self.title}, {SAMPLER_TITLES[sampler]}"


#: HTL's margin constant, the paper's beta.
HTL_DEFAULTS = {"beta": 0.1}


def _htl_choice(title: str, group: str, **options: Any) -> Variant:
    return Variant(
        title,
        _htl,
        HTL_DEFAULTS,
        group=group,
        options=options,
        sampler=ANCHOR_NEIGHBOR,
        uses_tree=True,
    )


def _with_an_sampler(base: Variant) -> Variant:
    """``base`` on anchor-neighbour batches: an ablation row, with the tree its
    sampler needs."""
    return replace(
        base,
        title=f"ablation: {base.title}, A-N sampler",
        group=ABLATION,
        sampler=ANCHOR_NEIGHBOR,
        uses_tree=True,
        loss_title=f"ablation: {base.title}",
    )


#: The main rows of the baselines: the losses PML has.
_BASELINES: Dict[str, Variant] = {
    "contrastive": Variant("Contrastive", _contrastive, {"pos_margin": 0.0, "neg_margin": 0.3841}),
    "triplet": Variant("Triplet", _triplet, {"margin": 0.0961}),
    "margin": Variant("Margin", _margin, {"margin": 0.0878, "beta": 0.7838, "beta_lr": 1.31e-3}),
    "multi_similarity": Variant(
        "Multi-similarity + miner",
        _multi_similarity,
        {"alpha": 17.97, "beta": 75.66, "base": 0.77, "epsilon": 0.39},
    ),
}
#: The warm start of the htl_warm row without --warm-start: iterations of the plain
#: triplet loss before HTL.
HTL_WARM_ITERATIONS = 250

#: Every loss the benchmark can train, in the order of its tables. margin_scale is
#: lambda in alpha = beta + lambda (d_H - s_ya).
VARIANTS: Dict[str, Variant] = {
    **_BASELINES,
    "htl": Variant(
        "HTL (A-N sampler, tree per epoch)",
        _htl,
        HTL_DEFAULTS,
        sampler=ANCHOR_NEIGHBOR,
        uses_tree=True,
        loss_title="HTL (tree per epoch)",
    ),
    "htl_mperclass": Variant(
        "ablation: HTL margin, MPerClass sampler",
        _htl,
        HTL_DEFAULTS,
        group=ABLATION,
        uses_tree=True,
        loss_title="ablation: HTL margin",
    ),
    "triplet_an": _with_an_sampler(_BASELINES["triplet"]),
    "contrastive_an": _with_an_sampler(_BASELINES["contrastive"]),
    "margin_an": _with_an_sampler(_BASELINES["margin"]),
    "multi_similarity_an": _with_an_sampler(_BASELINES["multi_similarity"]),
    "htl_plain": Variant(
        "ablation: HTL, hinge on plain distances (as printed)",
        _htl_plain_distances,
        HTL_DEFAULTS,
        group=ABLATION,
        sampler=ANCHOR_NEIGHBOR,
        uses_tree=True,
    ),
    "htl_single": _htl_choice("choice: HTL, single linkage", CHOICE, linkage="single"),
    "htl_complete": _htl_choice("choice: HTL, complete linkage", CHOICE, linkage="complete"),
    "htl_level1": _htl_choice("choice: HTL, levels counted from 1", CHOICE, level_start=1),
    "htl_L8": _htl_choice("choice: HTL, L = 8 levels", CHOICE, num_levels=8),
    "htl_L32": _htl_choice("choice: HTL, L = 32 levels", CHOICE, num_levels=32),
    "htl_m2": _htl_choice(
        "choice: HTL, m = 2 classes per anchor (l' = 8)", CHOICE, classes_per_anchor=2
    ),
    "htl_m8": _htl_choice(
        "choice: HTL, m = 8 classes per anchor (l' = 2)", CHOICE, classes_per_anchor=8
    ),
    "htl_train_stats": _htl_choice(
        "choice: HTL, tree from the training steps' embeddings (no extra pass)",
        CHOICE,
        statistics_from="training",
    ),
    "htl_lambda0": _htl_choice(
        "diagnosis: HTL, lambda = 0 (flat margin beta, tree-chosen batches)",
        DIAGNOSIS,
        margin_scale=0.0,
    ),
    "htl_lambda05": _htl_choice(
        "diagnosis: HTL, lambda = 0.5 (tree's part of the margin halved)",
        DIAGNOSIS,
        margin_scale=0.5,
    ),
    "htl_first_tree": _htl_choice(
        "diagnosis: HTL, first tree kept (never rebuilt)", DIAGNOSIS, rebuild="first"
    ),
    "htl_aug_view": _htl_choice(
        "diagnosis: HTL, tree from augmented training views", DIAGNOSIS, tree_view="augmented"
    ),
    "htl_warm": _htl_choice(
        "diagnosis: HTL, warm start (the plain triplet loss first)",
        DIAGNOSIS,
        warm_start=HTL_WARM_ITERATIONS,
    ),
}
#: Each "<loss>_an" row and the loss it draws anchor-neighbour batches for.
AN_ROWS: Dict[str, str] = {f"{name}_an": name for name in _BASELINES if f"{name}_an" in VARIANTS}


def names_in(group: str) -> List[str]:
    """The variants of ``group``, in table order."""
    return [name for name, variant in VARIANTS.items() if variant.group == group]


MAIN_LOSSES = names_in(MAIN)
ABLATIONS = names_in(ABLATION)
CHOICE_ABLATIONS = names_in(CHOICE)
DIAGNOSIS_ABLATIONS = names_in(DIAGNOSIS)
#: Each choice or diagnosis row's one option set otherwise.
CHOICE_VARIANTS: Dict[str, Dict[str, Any]] = {
    name: dict(variant.options)
    for name, variant in VARIANTS.items()
    if variant.group in (CHOICE, DIAGNOSIS)
}
HYPERPARAMETERS: Dict[str, Dict[str, Any]] = {
    name: dict(variant.hyperparameters) for name, variant in VARIANTS.items()
}
LOSS_TITLES: Dict[str, str] = {name: variant.title for name, variant in VARIANTS.items()}
#: Rows drawn dashed in the convergence plot.
DASHED = [name for name, variant in VARIANTS.items() if variant.group != MAIN]
USES_AN_SAMPLER = {n for n, v in VARIANTS.items() if v.sampler == ANCHOR_NEIGHBOR}
USES_TREE = {n for n, v in VARIANTS.items() if v.uses_tree}


def sampler_of(loss_name: str, choice: str = "default") -> str:
    """The sampler ``loss_name`` draws its batches from under --sampler ``choice``."""
    return SAMPLER_CHOICES[choice] or VARIANTS[loss_name].sampler


def titles_for(choice: str = "default") -> Dict[str, str]:
    """Every row's title: its own (each names the sampler where it is not
    MPerClassSampler), or under --sampler ``choice`` one that names the sampler."""
    if choice == "default":
        return dict(LOSS_TITLES)
    return {name: v.title_with(sampler_of(name, choice)) for name, v in VARIANTS.items()}


def choices_of(loss_name: str) -> Dict[str, Any]:
    """The options ``loss_name`` sets otherwise than HTL's defaults ({} for most)."""
    return dict(CHOICE_VARIANTS.get(loss_name, {}))


def build_loss(name: str, hyperparameters: Mapping[str, Any], collect_stats: bool) -> LossParts:
    """The loss ``name`` with ``hyperparameters`` (RUN_OPTIONS among them are not
    the loss's) and its variant's own loss options."""
    if name not in VARIANTS:
        raise ValueError(f"unknown loss {name!r}")
    variant = VARIANTS[name]
    args = {k: v for k, v in hyperparameters.items() if k not in RUN_OPTIONS}
    args.update({k: v for k, v in variant.options.items() if k not in RUN_OPTIONS})
    return variant.build(args, {"collect_stats": collect_stats})
