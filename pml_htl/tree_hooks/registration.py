"""The consumers a TreeRebuildHook hands its trees to, and their agreement."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..tree import HierarchicalClassTree, TreeBuilder, TreeConsumer, TreeRequirements

Registered = Tuple[TreeConsumer, TreeRequirements]


class Registration:
    """Consumers with their requirements, the tree options they agree on, and
    the one consumer that feeds training statistics (``statistics_from="training"``).

    Args:
        given_options: the hook's own ``num_levels``, ``linkage``,
            ``level_start`` (None: not given, a consumer's may be taken).
        resolved_options: the same with defaults filled in.
        statistics_from: ``"inference"`` or ``"training"``.
        normalize: the hook's ``normalize`` (None: as the consumers').
    """

    def __init__(
        self,
        given_options: Dict[str, Any],
        resolved_options: Dict[str, Any],
        statistics_from: str,
        normalize: Optional[bool],
    ):
        self.tree_options = dict(resolved_options)
        # where each option came from: None (a default) may still be taken from a loss
        self.option_sources: Dict[str, Optional[str]] = {
            name: (None if value is None else "this hook's arguments")
            for name, value in given_options.items()
        }
        self.statistics_from = statistics_from
        self.normalize = normalize
        self.consumers: List[TreeConsumer] = []
        self.requirements: List[TreeRequirements] = []

    def add(self, consumers, builder: TreeBuilder) -> None:
        """Register ``consumers`` (all or none) and configure ``builder`` with
        the options and normalisation they agree on."""
        for consumer in consumers:
            if not isinstance(consumer, TreeConsumer):
                raise TypeError(
                    "consumers must be tree consumers (tree, requirements(), attach(builder), "
                    "update_tree(tree, label_fn)): the loss, miner or sampler, or a subclass of "
                    f"pml_htl.tree.TreeConsumerMixin; got {type(consumer).__name__}"
                )
        new = [(c, c.requirements()) for c in consumers]
        everyone = list(zip(self.consumers, self.requirements)) + new
        options, sources = dict(self.tree_options), dict(self.option_sources)
        for consumer, wants in new:
            _adopt_tree_options(options, sources, consumer, wants)
        feeder = self._feeder(everyone, required=False)
        normalize = self._normalization(everyone, feeder)
        # every check passed: nothing below fails
        self.tree_options, self.option_sources = options, sources
        builder.tree_options, builder.normalize = options, normalize
        for consumer, wants in new:
            consumer.attach(builder if feeder is not None and consumer is feeder[0] else None)
            self.consumers.append(consumer)
            self.requirements.append(wants)

    def feeder(self) -> Optional[TreeConsumer]:
        """With statistics_from="training", the consumer whose training
        statistics the trees come from (raises when there is none)."""
        found = self._feeder(list(zip(self.consumers, self.requirements)))
        return None if found is None else found[0]

    def hand_out(self, tree: HierarchicalClassTree, label_fn=None) -> None:
        """Give ``tree`` to every consumer, or to none if one of them refuses it
        (the refusing one is unchanged, the others get their previous tree back)."""
        previous = [consumer.tree for consumer in self.consumers]
        taken = 0
        try:
            for consumer in self.consumers:
                consumer.update_tree(tree, label_fn)
                taken += 1
        except Exception:
            for consumer, old in reversed(list(zip(self.consumers[:taken], previous))):
                consumer.update_tree(old, label_fn)
            raise

    def _feeder(self, registered: List[Registered], required: bool = True) -> Optional[Registered]:
        if self.statistics_from != "training":
            return None
        feeders = [(c, r) for c, r in registered if r.feeds_statistics]
        if len(feeders) > 1:
            raise ValueError(
                "statistics_from='training' takes the training statistics of one registered "
                f"loss, got {len(feeders)}: register only the loss the trainer uses"
            )
        if not feeders:
            if required:
                raise ValueError(
                    "statistics_from='training' builds trees from the statistics a registered "
                    "HierarchicalTripletLoss gathers in the training steps, and none is "
                    "registered: register the loss (the inner loss of a wrapper), or use "
                    "statistics_from='inference'"
                )
            return None
        return feeders[0]

    def _normalization(self, registered: List[Registered], feeder: Optional[Registered]) -> bool:
        """L2-normalise before the statistics: as asked, else as the feeding
        loss or the first consumer with a distance does, else True."""
        if feeder is not None:
            consumer, wants = feeder
            if self.normalize is not None and self.normalize != wants.normalize:
                raise ValueError(
                    f"normalize={self.normalize} but the registered {type(consumer).__name__} "
                    f"gathers statistics with normalize_embeddings={wants.normalize}: with "
                    "statistics_from='training' every tree must use the loss's normalisation "
                    "(leave normalize=None)"
                )
        if self.normalize is not None:
            return self.normalize
        return next((r.normalize for _, r in registered if r.normalize is not None), True)


def _adopt_tree_options(
    options: Dict[str, Any],
    sources: Dict[str, Optional[str]],
    consumer: TreeConsumer,
    wants: TreeRequirements,
) -> None:
    """Take a consumer's tree options where the hook has only defaults; raise,
    naming the option, where they conflict with options already fixed."""
    for name, value in (wants.tree_options or {}).items():
        if sources[name] is None:
            options[name], sources[name] = value, f"the registered {type(consumer).__name__}"
        elif options[name] != value:
            raise ValueError(
                f"{type(consumer).__name__} uses {name}={value!r}, but this TreeRebuildHook "
                f"builds trees with {name}={options[name]!r} (from {sources[name]}): give "
                f"both the same {name}"
            )
