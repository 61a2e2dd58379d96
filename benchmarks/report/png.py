"""A matplotlib figure as PNG bytes."""

from __future__ import annotations

import io


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes, cropped to what is drawn (a legend below the axes
    included); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")  # holds the legend below
    plt.close(fig)
    return buf.getvalue()
