"""Face verification as LFW's View 2 protocol defines it.

``pairs.txt`` splits its pairs into k folds (10 for LFW). For each fold the
distance threshold is the one with the highest accuracy on the other k - 1
folds, searched over their pair distances; it is then applied to the held-out
fold. The result is the mean and the standard deviation of the k held-out
accuracies. Distances are cosine distances of L2-normalised embeddings
(1 - cosine similarity, in [0, 2]); a pair at distance <= threshold is called
the same person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, Tuple

import numpy as np
import torch

from benchmarks.data.lfw_pairs import IndexedPairs


@dataclass(frozen=True)
class FoldResult:
    accuracies: np.ndarray  # the held-out accuracy of each fold
    thresholds: np.ndarray  # the threshold each fold got from the others

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Population standard deviation over folds (numpy's default, ddof=0, as
        the face recognition literature's LFW evaluation code reports it)."""
        return float(np.std(self.accuracies))


def fold_split(folds: np.ndarray, num_folds: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(masks of the other folds, mask of the held-out fold), one per fold."""
    for k in range(num_folds):
        held_out = folds == k
        yield ~held_out, held_out


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """The share of pairs called right: same person iff distance <= threshold."""
    return float(np.mean((distances <= threshold) == same))


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The pair distance that, as a threshold, calls the most pairs right; the
    smallest such distance when several tie."""
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order]
    same_at_or_below = np.cumsum(s)
    different_above = np.sum(~s) - np.cumsum(~s)
    correct = same_at_or_below + different_above
    # a threshold takes every pair at its distance: only the last of equal distances counts
    last_of_ties = np.r_[d[1:] != d[:-1], True]
    correct = np.where(last_of_ties, correct, -1)
    return float(d[int(np.argmax(correct))])  # argmax: the first, i.e. smallest, maximiser


def kfold_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldResult:
    """Each fold's accuracy at the threshold chosen on the other folds."""
    distances, same = np.asarray(distances, dtype=np.float64), np.asarray(same, dtype=bool)
    num_folds = int(folds.max()) + 1
    accuracies, thresholds = [], []
    for others, held_out in fold_split(folds, num_folds):
        threshold = best_threshold(distances[others], same[others])
        thresholds.append(threshold)
        accuracies.append(accuracy(distances[held_out], same[held_out], threshold))
    return FoldResult(np.asarray(accuracies), np.asarray(thresholds))


def cosine_distances(embeddings: torch.Tensor, index1, index2) -> np.ndarray:
    """1 - cosine similarity of the L2-normalised embeddings of each pair."""
    e = torch.nn.functional.normalize(embeddings.double(), dim=1)
    i1 = torch.as_tensor(index1, device=e.device)
    i2 = torch.as_tensor(index2, device=e.device)
    return (1 - (e[i1] * e[i2]).sum(1)).cpu().numpy()


def verification_metrics(embeddings: torch.Tensor, pairs: IndexedPairs) -> Dict[str, float]:
    """The k-fold verification accuracy (mean and std over folds) of ``embeddings``."""
    result = kfold_accuracy(
        cosine_distances(embeddings, pairs.index1, pairs.index2), pairs.same, pairs.folds
    )
    return {
        "lfw_verification_accuracy": result.mean,
        "lfw_verification_accuracy_std": result.std,
    }
