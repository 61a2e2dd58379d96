"""tree.png: a run's last class tree, recorded as plain lists and drawn whole
(few classes) or as its top and one subtree (many classes)."""

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import is_valid_linkage

from benchmarks.config import RunConfig
from benchmarks.evaluation.hierarchy import tree_record
from benchmarks.report import write_reports
from benchmarks.report.tree_picture import _members, _sub_linkage, _subtree_root, tree_png
from pml_htl import HierarchicalClassTree

PNG = b"\x89PNG\r\n\x1a\n"


def tree_of(num_classes, per_class=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class) * 2 + 10
    centres = torch.randn(num_classes, 8, generator=g)
    x = centres.repeat_interleave(per_class, 0) + 0.3 * torch.randn(len(labels), 8, generator=g)
    return HierarchicalClassTree.from_embeddings(x, labels), labels.numpy()


def test_the_record_maps_names_and_superclasses_through_the_label_map():
    tree, dataset_labels = tree_of(6)
    # the data set's labels are 0..5; the loss sees 2 y + 10 (the trainer's map)
    own = (dataset_labels - 10) // 2
    supers = np.where(own < 3, 1, 0)
    record = tree_record(
        tree, own, supers, ["Greek", "Latin"], {c: chr(65 + c) for c in range(6)},
        label_fn=lambda y: np.asarray(y) * 2 + 10,
    )  # fmt: skip
    assert record["labels"] == [10, 12, 14, 16, 18, 20]
    assert record["names"] == ["A", "B", "C", "D", "E", "F"]
    assert record["superclasses"] == ["Latin"] * 3 + ["Greek"] * 3
    assert np.allclose(record["linkage"], tree.linkage_matrix(), atol=1e-6)
    assert len(record["thresholds"]) == tree.num_levels + 1


def test_a_subtree_is_a_valid_linkage_of_its_leaves():
    tree, _ = tree_of(150)
    Z, C = tree.linkage_matrix(), 150
    root = _subtree_root(Z, C, 36)
    sub, leaves = _sub_linkage(Z, C, root)
    assert is_valid_linkage(sub)
    assert sorted(leaves) == sorted(_members(Z, root, C))
    assert len(leaves) == Z[root - C, 3] <= 36
    assert sub[-1, 3] == len(leaves)


@pytest.mark.parametrize("num_classes", [12, 150])
def test_small_and_large_trees_are_drawn(num_classes):
    tree, labels = tree_of(num_classes)
    supers = (labels // 7) % 5
    record = tree_record(tree, labels, supers)
    assert tree_png(record, "a tree")[:8] == PNG


def test_reports_draw_every_runs_tree_and_the_first_htl_runs(tmp_path):
    tree, labels = tree_of(10)
    record = tree_record(tree, labels)

    def run(loss, seed):
        return {"loss": loss, "seed": seed, "final": {"recall_at_1": 0.5},
                "seconds_per_iteration": 1.0, "tree_seconds": 0.0, "tree": record,
                "curve": [{"iteration": 0, "recall_at_1": 0.5}]}  # fmt: skip

    cfg = RunConfig(losses=["triplet_an", "htl"], seeds=[0, 1], recall_ks=[1], out=str(tmp_path))
    titles = {"triplet_an": "Triplet, A-N", "htl": "HTL"}
    write_reports([run("triplet_an", 0), run("htl", 1), run("htl", 0)], cfg, {}, titles)
    drawn = sorted(p.name for p in (tmp_path / "trees").iterdir())
    assert drawn == ["htl__seed0.png", "htl__seed1.png", "triplet_an__seed0.png"]
    assert (tmp_path / "tree.png").read_bytes()[:8] == PNG
