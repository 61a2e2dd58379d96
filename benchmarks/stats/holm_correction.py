"""Holm's step-down correction over a family of p-values."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from statsmodels.stats.multitest import multipletests


def holm(p_values: Sequence[Optional[float]], alpha: float = 0.05) -> List[Dict[str, Any]]:
    """Holm's step-down correction, in input order: ``[{"p_value", "p_holm", "significant"}]``.

    None entries (untestable comparisons) stay None / not significant and are left out of the
    family, so they do not enlarge the correction of the others.
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    tested = []
    for p in p_values:
        if p is None:
            continue
        try:
            value = float(p)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(p, bool) or not 0.0 <= value <= 1.0:
            raise ValueError(f"p_values must hold p-values in [0, 1] or None, got {p!r}")
        tested.append(value)
    adjusted: List[float] = []
    reject: List[bool] = []
    if tested:
        reject_array, adjusted_array, _, _ = multipletests(tested, alpha=alpha, method="holm")
        adjusted = [float(p) for p in adjusted_array]
        reject = [bool(r) for r in reject_array]
    out = []
    position = 0
    for p in p_values:
        if p is None:
            out.append({"p_value": None, "p_holm": None, "significant": False})
            continue
        out.append(
            {"p_value": float(p), "p_holm": adjusted[position], "significant": reject[position]}
        )
        position += 1
    return out
