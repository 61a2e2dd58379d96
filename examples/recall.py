"""Recall@K for the examples, in plain torch (no faiss, any PML version).

Recall@K as metric-learning papers define it: the fraction of queries with
at least one sample of their own class among their K nearest neighbours,
the query itself left out. (PML's ``AccuracyCalculator`` gives R@1 as
``precision_at_1``; the benchmark adds Recall@K to it.)
"""

from typing import Dict, Sequence

import torch


def recall_at_k(
    embeddings: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 2, 4, 8)
) -> Dict[int, float]:
    x = torch.nn.functional.normalize(embeddings.float(), dim=1)
    similarity = x @ x.T
    similarity.fill_diagonal_(-float("inf"))  # a query is not its own neighbour
    nearest = similarity.topk(max(ks), dim=1).indices
    hits = labels[nearest] == labels[:, None]
    return {k: hits[:, :k].any(1).float().mean().item() for k in ks}
