"""The tree-rebuild hook for PML trainers and hand-written loops."""

from .tree_rebuild_hook import TreeRebuildHook, chain_hooks

__all__ = ["TreeRebuildHook", "chain_hooks"]
