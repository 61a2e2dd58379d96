"""HTL's tree-rebuild hook, for hand-written loops and PML 2's trainers.

Named ``tree_hooks`` so that it does not clash with PML's idiom
``hooks = logging_presets.get_hook_container(record_keeper)``.
"""

from .embedding_pass import evaluation_mode
from .pml_trainer import chain_hooks
from .tree_rebuild_hook import TreeRebuildHook

__all__ = ["TreeRebuildHook", "chain_hooks", "evaluation_mode"]
