"""A model scored on the test split: embeddings, the accuracy calculator's metrics,
the per-query hits the paired tests need, LFW verification where the data have
pairs, and the curve of these numbers over a run."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import tqdm

from benchmarks.config import RunConfig
from benchmarks.data.splits import DataSplits
from benchmarks.data.validation import validation_splits
from benchmarks.evaluation.verification import verification_metrics
from benchmarks.pml_compat import log_accuracies
from pml_htl.tree_hooks import evaluation_mode

#: The final evaluation's per-query Recall@1 hits ("0"/"1" per query, in the query
#: set's order), kept for the paired tests between losses (benchmarks/stats/paired.py).
QUERY_HITS = "query_hits_at_1"
#: Embedding batch size at evaluation.
EVAL_BATCH_SIZE = 256

Models = Sequence[torch.nn.Module]  # (trunk, embedder)


def query_hits_at_1(calculator, query, q_labels, ref, r_labels, ref_includes_query: bool) -> str:
    """Whether each query's nearest neighbour (itself left out) shares its class, by
    the accuracy calculator's own k-NN on the embeddings it sees (normalised or not)."""
    if getattr(calculator, "normalize_embeddings", False):
        query = torch.nn.functional.normalize(query.float(), dim=1)
        ref = query if ref_includes_query else torch.nn.functional.normalize(ref.float(), dim=1)
    _, indices = calculator.knn_func(query, 1, ref, ref_includes_query)
    hits = (r_labels[indices[:, 0].to(r_labels.device)] == q_labels).cpu().numpy()
    return "".join("1" if h else "0" for h in hits)


def embed(
    models: Models,
    dataset: torch.utils.data.Dataset,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    desc: str,
    progress: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, labels) of ``dataset`` by the models in eval mode."""
    trunk, embedder = models
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    out, labels = [], []
    with evaluation_mode(trunk, embedder), torch.no_grad():
        for data, y in tqdm.tqdm(loader, desc=desc, leave=False, disable=not progress):
            out.append(embedder(trunk(data.to(device))).float())
            labels.append(torch.as_tensor(y))
    return torch.cat(out), torch.cat(labels).to(device)


def evaluate(
    models: Models,
    splits: DataSplits,
    calculator,
    device: torch.device,
    num_workers: int,
    progress: bool = False,
) -> Dict[str, Any]:
    """The metrics of the models on the test split (its query set against its
    reference set), with the per-query hits under QUERY_HITS."""
    bs, nw = EVAL_BATCH_SIZE, num_workers
    query, q_labels = embed(models, splits.query, device, bs, nw, "evaluate: embedding", progress)
    if splits.query_is_reference:
        metrics = calculator.get_accuracy(query, q_labels)
    else:
        ref, r_labels = embed(
            models, splits.reference, device, bs, nw, "evaluate: gallery", progress
        )
        metrics = calculator.get_accuracy(query, q_labels, ref, r_labels)
    metrics = {k: float(v) for k, v in metrics.items()}
    if splits.query_is_reference:
        metrics[QUERY_HITS] = query_hits_at_1(calculator, query, q_labels, query, q_labels, True)
    else:
        metrics[QUERY_HITS] = query_hits_at_1(calculator, query, q_labels, ref, r_labels, False)
    if splits.pairs is not None:  # face verification: the pairs index the query set
        metrics.update(verification_metrics(query, splits.pairs))
    return metrics


class Evaluation:
    """Evaluates on the test split (rank 0 only) and keeps the accuracy curve and
    the time spent evaluating; the numbers also go to PML's record-keeper, if any.
    Where the splits hold validation classes (--select-on-val), each evaluation
    scores them too, into ``validation_curve``."""

    def __init__(
        self,
        models: Models,
        splits: DataSplits,
        calculator,
        device: torch.device,
        cfg: RunConfig,
        record_keeper=None,
        rank: int = 0,
        progress: bool = False,
    ):
        self.models, self.splits, self.calculator, self.device = models, splits, calculator, device
        self.num_workers = cfg.num_workers
        self.iters_per_epoch = cfg.iters_per_epoch
        self.record_keeper = record_keeper
        self.rank = rank
        self.progress = progress
        self.curve: List[Dict[str, Any]] = []
        self.validation = None if splits.validation is None else validation_splits(splits)
        self.validation_curve: List[Dict[str, Any]] = []
        self.seconds = 0.0

    def __call__(self, epoch: int) -> Optional[Dict[str, Any]]:
        if self.rank != 0:
            return None  # rank 0 evaluates and writes; the others train on
        start = time.perf_counter()
        metrics = evaluate(
            self.models, self.splits, self.calculator, self.device, self.num_workers, self.progress
        )
        iteration = epoch * self.iters_per_epoch
        if self.validation is not None:
            held_out = evaluate(
                self.models, self.validation, self.calculator, self.device, self.num_workers
            )
            held_out.pop(QUERY_HITS)
            self.validation_curve.append({"epoch": epoch, "iteration": iteration, **held_out})
        self.seconds += time.perf_counter() - start
        self.curve.append({"epoch": epoch, "iteration": iteration, **metrics})
        if self.record_keeper is not None:
            numbers = {k: v for k, v in metrics.items() if k != QUERY_HITS}
            log_accuracies(self.record_keeper, numbers, iteration)
        return metrics
