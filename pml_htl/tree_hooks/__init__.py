"""HTL's tree-rebuild hook for PML trainers and hand-written loops.

Named ``tree_hooks`` so that it does not clash with PML's idiom
``hooks = logging_presets.get_hook_container(record_keeper)``.
"""

from .tree_rebuild_hook import TreeRebuildHook, chain_hooks, evaluation_mode

__all__ = ["TreeRebuildHook", "chain_hooks", "evaluation_mode"]
