"""The run configuration: every setting of a comparison, typed, and where it applies.

A :class:`RunConfig` is built once from the command line (benchmarks/cli.py) and
read by every later step. Some settings apply only to some data sets or
backbones (``image_size`` to the photo data sets, ``pretrained_weights`` to the
torchvision trunks): the data set and backbone modules say which they read, and
a setting that does not apply is None and is left out of the record.

The record (``RunConfig.record()``, also what a RunConfig reads as a mapping) is
what results.json stores under "configuration"; :func:`config_hash` of it guards
resuming, so it must not change for the same settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Iterator, List, Optional, Tuple

from benchmarks import variants
from benchmarks.data import DATASETS, default_augment, settings_read_by_dataset
from benchmarks.models import BACKBONES, EMBEDDERS, settings_read_by_backbone

Hyperparameters = Dict[str, Any]

#: --tune's budget: optuna trials per loss, class-disjoint folds, iterations per fold.
TuneBudget = Dict[str, int]

#: The data sets' own training augmentation (the photo recipe for photos, none where
#: the published glyph and Fashion-MNIST results were made without).
DEFAULT_AUGMENT = {name: default_augment(name) for name in DATASETS}


#: Where a setting applies: (the setting that decides, the values it applies to),
#: one pair per deciding setting; the setting applies when any pair holds.
Scope = Tuple[Tuple[str, Tuple[str, ...]], ...]


def _read_by(setting: str) -> Dict[str, Any]:
    """A setting only some data sets or backbones read: it applies where either does."""
    pairs = (
        ("dataset", tuple(d for d in DATASETS if setting in settings_read_by_dataset(d))),
        ("backbone", tuple(b for b in BACKBONES if setting in settings_read_by_backbone(b))),
    )
    return {"scope": tuple((decider, values) for decider, values in pairs if values)}


def _recorded_when_set() -> Dict[str, Any]:
    """A setting recorded only once it is not at its default: it came after results
    were published, or it is filled in by the run (the data's description)."""
    return {"recorded_when_set": True}


@dataclass(frozen=True)
class RunConfig(Mapping):
    """Every setting of a comparison. Read the attributes; the mapping view is the
    record (results.json's "configuration"), out-of-scope settings absent."""

    # the model and its training
    dataset: str = "glyphs"
    backbone: str = "small-cnn"
    embedding_size: int = 64
    batch_size: int = 64
    #: m: classes per anchor-neighbour group (HTL's sampler)
    classes_per_anchor: int = 4
    #: t: samples per class in a batch
    samples_per_class: int = 4
    epochs: int = 10
    iters_per_epoch: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    #: "adam" or "sgd"
    optimizer: str = "adam"
    # settings only some data sets or backbones read
    #: the side photos are cropped to
    image_size: Optional[int] = field(default=224, metadata=_read_by("image_size"))
    #: renderings per glyph class
    glyph_samples: Optional[int] = field(default=40, metadata=_read_by("glyph_samples"))
    data_root: Optional[str] = field(default=None, metadata=_read_by("data_root"))
    #: folder: a file naming the training classes
    train_classes: Optional[str] = field(default=None, metadata=_read_by("train_classes"))
    #: a local state dict for the trunk
    pretrained_weights: Optional[str] = field(default=None, metadata=_read_by("pretrained_weights"))
    #: googlenet's ImageNet input transform, as the trunk gets it
    googlenet_transform_input: Optional[bool] = field(
        default=None, metadata=_read_by("googlenet_transform_input")
    )
    #: "standard", "light" or "none"; None: the data set's own (DEFAULT_AUGMENT)
    augment: Optional[str] = None
    #: --tune's budget, or None: no tuning
    tune: Optional[TuneBudget] = None
    # the training regime
    #: the trunk embeds every image once (cached); only the embedder trains
    freeze_trunk: bool = field(default=False, metadata=_recorded_when_set())
    #: "linear" or "mlp" (the command line's default with freeze_trunk)
    embedder: str = field(default="linear", metadata=_recorded_when_set())
    #: freeze_trunk: augmented views cached per training image (0: the clean view)
    feature_views: int = field(default=0, metadata=_recorded_when_set())
    #: iterations of the plain triplet loss every loss starts with (None: none)
    warm_start: Optional[int] = field(default=None, metadata=_recorded_when_set())
    #: report the test accuracy at the best checkpoint on held-out training classes
    select_on_val: bool = field(default=False, metadata=_recorded_when_set())
    #: select_on_val: the share of the training classes held out
    val_classes: Optional[float] = field(default=None, metadata=_recorded_when_set())
    #: every loss's batch sampler: "default" (each variant's own), "mperclass" or
    #: "anchor-neighbor"
    sampler: str = field(default="default", metadata=_recorded_when_set())
    # what to run and where
    losses: List[str] = field(default_factory=lambda: list(variants.MAIN_LOSSES))
    seeds: List[int] = field(default_factory=lambda: [0])
    #: the preset and --quick, recorded by name (their values are recorded too)
    preset: str = "cpu"
    quick: bool = False
    eval_every: int = 1
    #: the Recall@K cut-offs: asked for (None: the data set's), then the ones used
    recall_ks: Optional[List[int]] = None
    num_workers: int = 0
    #: each loss's hyper-parameters (the losses run only)
    hyperparameters: Dict[str, Hyperparameters] = field(default_factory=dict)
    out: Optional[str] = None
    device: str = "cpu"
    world_size: int = 1
    # filled in by the run
    #: the data set's description, once loaded
    data: Optional[str] = field(default=None, metadata=_recorded_when_set())
    #: how the verification pairs are scored (face data only)
    verification: Optional[str] = field(default=None, metadata=_recorded_when_set())
    #: --tune's studies, once tuned
    tuning: Optional[Dict[str, Any]] = field(default=None, metadata=_recorded_when_set())
    # a tuning trial's training run
    #: evaluate the starting model
    evaluate_start: bool = field(default=True, metadata=_recorded_when_set())
    #: PML's CSV and TensorBoard logs
    logs: bool = field(default=True, metadata=_recorded_when_set())

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.embedder not in EMBEDDERS:
            raise ValueError(f"embedder must be one of {EMBEDDERS}, got {self.embedder!r}")
        if self.sampler not in variants.SAMPLER_CHOICES:
            raise ValueError(
                f"sampler must be one of {tuple(variants.SAMPLER_CHOICES)}, got {self.sampler!r}"
            )
        for f in fields(self):
            if "scope" in f.metadata and not self.applies(f.name):
                object.__setattr__(self, f.name, None)  # what the data set does not read
        if self.augment is None:
            object.__setattr__(self, "augment", DEFAULT_AUGMENT[self.dataset])

    # ------------------------------------------------------------------ scope
    def applies(self, setting: str) -> bool:
        """Whether the chosen data set or backbone reads ``setting``."""
        scope = SCOPED_SETTINGS.get(setting)
        return scope is None or any(getattr(self, d) in values for d, values in scope)

    # ------------------------------------------------------------------ record
    def record(self) -> Dict[str, Any]:
        """The settings as results.json records them."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if "scope" in f.metadata and not self.applies(f.name):
                continue
            if f.metadata.get("recorded_when_set") and value == f.default:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "RunConfig":
        """The RunConfig a record was made from (results.json's "configuration")."""
        unknown = set(record) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"not a setting of a run: {sorted(unknown)}")
        return cls(**record)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes``."""
        return replace(self, **changes)

    def __getitem__(self, key: str) -> Any:
        return self.record()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.record())

    def __len__(self) -> int:
        return len(self.record())


#: Settings only some data sets or backbones read: setting -> its Scope. A flag for
#: one where it does not apply is an error.
SCOPED_SETTINGS: Dict[str, Scope] = {
    f.name: f.metadata["scope"] for f in fields(RunConfig) if "scope" in f.metadata
}

# --------------------------------------------------------------------------- shorthands
PRESETS: Dict[str, Dict[str, Any]] = {
    "cpu": {},
    # The paper's protocol on a GPU: BN-Inception's nearest torchvision relative,
    # 512-d, 227-pixel crops, m = 4 classes per anchor and t = 4 images per class.
    "paper": {
        "backbone": "googlenet",
        "embedding_size": 512,
        "image_size": 227,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 1e-3,
        "epochs": 30,
        "iters_per_epoch": 200,
    },
}
#: A preset's warm start, as a share (numerator, denominator) of the budget: --preset
#: paper's triplet phase is the first 5 of its 30 epochs. The length is our choice
#: (the paper starts from a triplet-trained network without saying how long it was
#: trained); a share keeps it in proportion when --epochs or --iters-per-epoch change.
PRESET_WARM_START: Dict[str, Tuple[int, int]] = {"paper": (5, 30)}
#: --quick: a short run (about 2 minutes on 2 CPU cores).
QUICK: Dict[str, Any] = dict(epochs=3, iters_per_epoch=40, glyph_samples=24)


# --------------------------------------------------------------------------- per loss
def run_options(loss_name: str, cfg: RunConfig) -> Dict[str, Any]:
    """m, t, the tree's view and rebuild policy, the warm start and the sampler of
    one loss: the configuration's, then its variant's, then its (tuned)
    hyper-parameters'; --warm-start, when given, sets every loss's warm start."""
    options: Dict[str, Any] = {
        "classes_per_anchor": cfg.classes_per_anchor,
        "samples_per_class": cfg.samples_per_class,
        "tree_view": "clean",
        "rebuild": "every_epoch",
        "warm_start": None,
    }
    for source in (variants.choices_of(loss_name), cfg.hyperparameters[loss_name]):
        options.update({k: v for k, v in source.items() if k in variants.RUN_OPTIONS})
    if options.pop("statistics_from", None) == "training":
        options["tree_view"] = "training"
    if cfg.warm_start is not None:
        options["warm_start"] = cfg.warm_start
    options["sampler"] = variants.sampler_of(loss_name, cfg.sampler)
    return options


#: Left out of the hash that guards resuming: which runs to make and where to write
#: them, the loader workers, the shorthands whose values are recorded (preset,
#: quick), and the hyper-parameters of the other losses.
NOT_HASHED = (
    "losses",
    "seeds",
    "out",
    "num_workers",
    "preset",
    "quick",
    "hyperparameters",
    "tuning",
)


def config_hash(record: Mapping[str, Any], loss: str) -> str:
    """What a finished run of ``loss`` must have been made with to be kept: a hash
    of the record (a RunConfig, or results.json's "configuration")."""
    keep = {k: v for k, v in record.items() if k not in NOT_HASHED}
    keep["hyperparameters"] = record["hyperparameters"][loss]
    # settings added after results were published enter only when they are not at
    # their default, so those results stay valid
    if "augment" in keep and keep["augment"] == DEFAULT_AUGMENT.get(record.get("dataset")):
        del keep["augment"]
    if keep.get("tune", "given") is None:
        del keep["tune"]
    keep["choices"] = variants.choices_of(loss)
    if keep.get("device", "").startswith("cuda:"):
        keep["device"] = "cuda"  # the local rank's index is not configuration
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]
