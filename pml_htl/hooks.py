"""Deprecated name of :mod:`pml_htl.tree_hooks`.

``from pml_htl import hooks`` clashed with PML's own idiom
``hooks = logging_presets.get_hook_container(record_keeper)``.
"""

import warnings

from .tree_hooks import TreeRebuildHook, chain_hooks  # noqa: F401

warnings.warn(
    "pml_htl.hooks is renamed pml_htl.tree_hooks (it clashed with PML's "
    "`hooks = logging_presets.get_hook_container(...)`); use "
    "`from pml_htl import tree_hooks` or `from pml_htl import TreeRebuildHook`",
    FutureWarning,
    stacklevel=2,
)
