"""The learned tree against known superclasses (benchmarks/evaluation/hierarchy.py): dendrogram
purity and ARI against hand-computed values, the random floor, what the tree's merges
mean, the label-space mapping, the superclasses the loaders give, and compare.py
recording the measures on the glyph data set."""

import itertools
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import compare
from benchmarks.config import RunConfig
from benchmarks.console import Console
from benchmarks.data import load_dataset
from benchmarks.evaluation import hierarchy
from benchmarks.training.epochs import EpochEnd
from pml_htl import HierarchicalClassTree
from pml_htl.tree.linkage import cut_levels

# Six classes, superclass A = {0, 1, 2}, B = {3, 4, 5}. The rows are in an order in
# which they can be carried out, not by height (as agglomerate's output can be):
#   {0,1} at 1, {3,4} at 2, {0,1}+{3,4} at 4, {2,5} at 3, {0,1,3,4}+{2,5} at 5.
#
# Dendrogram purity, per same-superclass pair (lowest common node, its leaves):
#   (0,1): {0,1}, 2/2 A = 1        (3,4): {3,4}, 2/2 B = 1
#   (0,2): root, 3/6 A = 1/2       (3,5): root, 3/6 B = 1/2
#   (1,2): root, 3/6 A = 1/2       (4,5): root, 3/6 B = 1/2
#   mean over the 6 pairs = (1 + 1 + 4 * 1/2) / 6 = 2/3.
# Cut into 2 clusters (the root undone): X = {0,1,3,4}, Y = {2,5}.
#   contingency X: A 2, B 2; Y: A 1, B 1 -> sum C(n_ij, 2) = 1 + 1 = 2
#   clusters: C(4,2) + C(2,2) = 7; superclasses: C(3,2) + C(3,2) = 6; C(6,2) = 15
#   expected = 7 * 6 / 15 = 2.8; max = (7 + 6) / 2 = 6.5
#   ARI = (2 - 2.8) / (6.5 - 2.8) = -0.8 / 3.7 = -8/37.
HAND_MERGES = np.array(
    [[0, 1, 1.0], [3, 4, 2.0], [0, 3, 4.0], [2, 5, 3.0], [0, 2, 5.0]], dtype=np.float64
)
HAND_SUPERCLASSES = ["A", "A", "A", "B", "B", "B"]


def test_dendrogram_purity_hand_computed():
    assert hierarchy.dendrogram_purity(HAND_MERGES, HAND_SUPERCLASSES) == pytest.approx(2 / 3)


def test_adjusted_rand_index_hand_computed():
    clusters = hierarchy.cut_into_clusters(HAND_MERGES, 6, 2)
    same = clusters[:, None] == clusters[None, :]
    expected_same = np.array([c in (2, 5) for c in range(6)])
    assert np.array_equal(same, expected_same[:, None] == expected_same[None, :])
    ari = hierarchy.adjusted_rand_index(HAND_MERGES, HAND_SUPERCLASSES)
    assert ari == pytest.approx(-8 / 37)


def test_cut_undoes_the_highest_merges_not_the_last_rows():
    # three clusters: the two highest merges (heights 5 and 4) undone, not the last two
    # rows (heights 3 and 5, which would leave {0,1,3,4}, {2}, {5})
    clusters = hierarchy.cut_into_clusters(HAND_MERGES, 6, 3)
    groups = {frozenset(np.flatnonzero(clusters == c).tolist()) for c in set(clusters)}
    assert groups == {frozenset({0, 1}), frozenset({3, 4}), frozenset({2, 5})}
    assert np.array_equal(hierarchy.cut_into_clusters(HAND_MERGES, 6, 6), np.arange(6))
    assert set(hierarchy.cut_into_clusters(HAND_MERGES, 6, 1)) == {0}


def test_a_perfect_tree_scores_one_and_the_random_floor_is_below():
    perfect = ["a", "a", "c", "b", "b", "c"]  # exactly the three lowest subtrees
    assert hierarchy.dendrogram_purity(HAND_MERGES, perfect) == pytest.approx(1.0)
    assert hierarchy.adjusted_rand_index(HAND_MERGES, perfect) == pytest.approx(1.0)
    # 4 superclasses of 6 classes each, merged superclass by superclass
    supers = np.repeat(np.arange(4), 6)
    rows = [[c, c + k, 1.0 + k] for s in range(4) for c in [6 * s] for k in range(1, 6)]
    rows += [[0, 6, 10.0], [12, 18, 11.0], [0, 12, 12.0]]
    merges = np.array(rows)
    assert hierarchy.dendrogram_purity(merges, supers) == pytest.approx(1.0)
    assert hierarchy.adjusted_rand_index(merges, supers) == pytest.approx(1.0)
    floor = hierarchy.random_floor(supers)
    assert floor == hierarchy.random_floor(supers)  # fixed seed
    # a random tree of 4 equal superclasses: purity well below 1, ARI about 0
    assert 0.25 < floor["dendrogram_purity"] < 0.75
    assert abs(floor["adjusted_rand_index"]) < 0.3


def _naive_purity(merges, supers):
    """The definition, literally: the leaf sets of every node, and for every
    same-superclass pair the first node holding both."""
    clusters = {c: {c} for c in range(len(supers))}
    nodes = []
    for i, j, _ in merges:
        clusters[int(i)] = clusters[int(i)] | clusters.pop(int(j))
        nodes.append(clusters[int(i)])
    purities = []
    for x, y in itertools.combinations(range(len(supers)), 2):
        if supers[x] != supers[y]:
            continue
        node = next(n for n in nodes if x in n and y in n)
        purities.append(sum(supers[c] == supers[x] for c in node) / len(node))
    return np.mean(purities)


def test_purity_matches_the_definition_on_random_trees():
    rng = np.random.default_rng(3)
    for _ in range(5):
        supers = rng.integers(0, 3, 13)
        merges = hierarchy.random_merges(13, rng)
        assert hierarchy.dendrogram_purity(merges, supers) == pytest.approx(
            _naive_purity(merges, supers)
        )


def test_random_merges_are_a_dendrogram():
    merges = hierarchy.random_merges(50, np.random.default_rng(1))
    assert merges.shape == (49, 3)
    alive = set(range(50))
    for i, j, _ in merges:  # both alive when merged; j retired, i stands for the union
        assert int(i) in alive and int(j) in alive and i != j
        alive.remove(int(j))
    assert len(alive) == 1


def test_not_a_dendrogram_is_refused():
    with pytest.raises(ValueError, match="shape"):
        hierarchy.dendrogram_purity(HAND_MERGES[:4], HAND_SUPERCLASSES)
    twice = HAND_MERGES.copy()
    twice[4] = [0, 1, 5.0]  # 0 and 1 are already together
    with pytest.raises(ValueError, match="twice"):
        hierarchy.dendrogram_purity(twice, HAND_SUPERCLASSES)


def test_a_tree_built_from_grouped_embeddings_recovers_the_groups():
    """What the library's merges mean, end to end: classes whose embeddings sit in
    three well separated groups give purity 1 and ARI 1 against those groups."""
    g = torch.Generator().manual_seed(0)
    groups = torch.eye(8)[:3] * 3  # three far apart group centres
    supers = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])  # interleaved: not label order
    centres = groups[supers] + 0.3 * torch.randn(9, 8, generator=g)
    labels = torch.arange(9).repeat_interleave(4)
    embeddings = centres[labels] + 0.02 * torch.randn(36, 8, generator=g)
    tree = HierarchicalClassTree.from_embeddings(embeddings, labels, normalize=False)
    merges = tree.merges.cpu().numpy()
    assert hierarchy.dendrogram_purity(merges, supers) == pytest.approx(1.0)
    assert hierarchy.adjusted_rand_index(merges, supers) == pytest.approx(1.0)
    shuffled = supers[[1, 0, 2, 3, 4, 5, 6, 7, 8]]  # two classes swap superclasses
    assert hierarchy.dendrogram_purity(merges, shuffled) < 0.9


def test_cut_agrees_with_the_trees_own_level_cut_on_a_large_tree():
    """1,500 classes: merge rounds, then the nearest-neighbour chain, rows not sorted by
    height. Cutting into k clusters is cutting at a threshold between the k-th and the
    (k-1)-th highest merge, as the library's cut_levels does."""
    g = torch.Generator().manual_seed(1)
    C = 1500
    labels = torch.arange(C).repeat_interleave(2)
    embeddings = torch.randn(C, 16, generator=g)[labels] + 0.1 * torch.randn(2 * C, 16)
    tree = HierarchicalClassTree.from_embeddings(embeddings, labels)
    merges = tree.merges.cpu().numpy()
    heights = np.sort(merges[:, 2])
    assert not np.all(np.diff(merges[:, 2]) >= 0)  # the rows are not in height order
    for k in (2, 7, 60):
        threshold = (heights[C - k - 1] + heights[C - k]) / 2
        expected = cut_levels(merges, C, np.array([threshold]))[0]
        clusters = hierarchy.cut_into_clusters(merges, C, k)
        assert len(set(clusters)) == k
        # the same partition: a bijection between the two labellings
        assert len(set(zip(clusters, expected))) == k


def test_superclasses_follow_the_trainers_label_mapping():
    from pytorch_metric_learning.utils.common_functions import LabelMapper

    labels = np.array([31, 7, 7, 20, 9, 31, 9, 20])  # sparse ids, not sorted
    supers = np.array(["x", "y", "y", "x", "z", "x", "z", "x"])
    mapper = LabelMapper(set_min_label_to_zero=True, dataset_labels=labels).map
    tree_labels = np.array([0, 1, 2, 3])  # ranks: 7 -> 0, 9 -> 1, 20 -> 2, 31 -> 3
    got = hierarchy.superclasses_of_tree_labels(tree_labels, labels, supers, lambda y: mapper(y, 0))
    assert got.tolist() == ["y", "z", "x", "x"]
    identity = hierarchy.superclasses_of_tree_labels([20, 31, 7], labels, supers)
    assert identity.tolist() == ["x", "x", "y"]
    with pytest.raises(ValueError, match=r"tree classes \[0"):
        hierarchy.superclasses_of_tree_labels(tree_labels, labels, supers)  # not mapped
    mixed = supers.copy()
    mixed[2] = "z"
    with pytest.raises(ValueError, match="class 7 has more than one superclass"):
        hierarchy.superclasses_of_tree_labels(tree_labels, labels, mixed, lambda y: mapper(y, 0))


def test_epoch_end_measures_the_hooks_tree_in_the_trainers_label_space(blob_dataset):
    """compare.py's wiring with a real PML trainer that remaps the labels 100, 103, ...
    to 0, 1, ...: the superclasses (the blobs' nearest group) reach the right classes."""
    from pytorch_metric_learning import trainers

    from pml_htl.tree_hooks import TreeRebuildHook

    # three groups of blob classes, far apart, in the data set's own labels
    groups = np.arange(12) % 3
    blob_dataset.data = (
        blob_dataset.data * 0.05 + 5 * torch.eye(6)[groups][np.repeat(np.arange(12), 10)]
    )
    supers = groups[(blob_dataset.labels - 100) // 3]
    trainer = trainers.MetricLossOnly(
        models={"trunk": torch.nn.Identity(), "embedder": torch.nn.Identity()},
        optimizers={},
        batch_size=8,
        loss_funcs={"metric_loss": torch.nn.Module()},
        mining_funcs={},
        dataset=blob_dataset,
        set_min_label_to_zero=True,
        dataset_labels=blob_dataset.labels,
    )
    cfg = RunConfig(epochs=3, eval_every=1, iters_per_epoch=5)
    hook = TreeRebuildHook(blob_dataset)
    epoch_end = EpochEnd(cfg, None, hook, "t", Console(quiet=True), 1)
    epoch_end.hierarchy = hierarchy.HierarchyTracker(blob_dataset.labels, supers)
    epoch_end.rebuild_tree(trainer, 10)  # after 2 epochs of 5 iterations
    assert hook.tree.labels.tolist() == list(range(12))
    (entry,) = epoch_end.hierarchy.entries
    assert entry["iteration"] == 10
    assert entry["num_classes"] == 12 and entry["num_superclasses"] == 3
    assert entry["dendrogram_purity"] == pytest.approx(1.0)
    assert entry["adjusted_rand_index"] == pytest.approx(1.0)
    assert entry["random_dendrogram_purity"] < 0.8


def _grey_jpeg(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8), mode="L").save(path)


def test_sop_gives_the_super_class_id_column(tmp_path):
    root = tmp_path / "Stanford_Online_Products"
    rows = {
        "train": [(1, 1, "bicycle"), (2, 1, "bicycle"), (3, 2, "chair"), (4, 2, "chair")],
        "test": [(5, 3, "bicycle"), (6, 3, "bicycle"), (7, 4, "chair"), (8, 4, "chair")],
    }
    super_ids = {"bicycle": 1, "chair": 4}
    for split, items in rows.items():
        lines = ["image_id class_id super_class_id path"]
        for image_id, class_id, category in items:
            rel = f"{category}_final/{class_id}_{image_id}.JPG"
            lines.append(f"{image_id} {class_id} {super_ids[category]} {rel}")
            _grey_jpeg(root / rel)
        (root / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    splits = load_dataset("sop", data_root=str(tmp_path), progress=False)
    assert splits.train_labels.tolist() == [1, 1, 2, 2]
    assert splits.train_superclasses.tolist() == [1, 1, 4, 4]


def test_inshop_gives_the_garment_category_of_the_path(tmp_path):
    rows = [
        ("img/WOMEN/Blouses_Shirts/id_00000001/02_1_front.jpg", "id_00000001", "train"),
        ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
        ("img/MEN/Denim/id_00000005/01_1_front.jpg", "id_00000005", "train"),
        ("img/WOMEN/Skirts/id_00000007/01_1_front.jpg", "id_00000007", "query"),
        ("img/WOMEN/Skirts/id_00000007/01_2_side.jpg", "id_00000007", "gallery"),
    ]
    text = [str(len(rows)), "image_name item_id evaluation_status"]
    text += [f"{p} {i} {s}" for p, i, s in rows]
    (tmp_path / "list_eval_partition.txt").write_text("\n".join(text) + "\n")
    for path, _, _ in rows:
        _grey_jpeg(tmp_path / path)
    splits = load_dataset("inshop", data_root=str(tmp_path), progress=False)
    assert splits.train_labels.tolist() == [1, 2, 5]
    assert splits.train_superclasses.tolist() == ["Blouses_Shirts", "Dresses", "Denim"]


def test_compare_records_the_measures_on_the_glyphs(tmp_path):
    """compare.py on the glyphs (scripts as superclasses): the HTL run's JSON holds one
    entry per tree (the initial one and one after each epoch but the last);
    results.json, results.md and hierarchy.png show them."""
    out = tmp_path / "out"
    compare.main(
        ["--dataset", "glyphs", "--quick", "--glyph-samples", "4", "--losses", "htl",
         "--epochs", "2", "--iters-per-epoch", "1", "--eval-every", "2", "--batch-size", "16",
         "--embedding-size", "8", "--device", "cpu", "--quiet", "--out", str(out)]
    )  # fmt: skip
    run = json.loads((out / "runs" / "htl__seed0.json").read_text())
    assert [e["iteration"] for e in run["hierarchy"]] == [0, 1]
    for entry in run["hierarchy"]:
        assert entry["num_classes"] == 224 and entry["num_superclasses"] == 7
        for key in ("dendrogram_purity", "random_dendrogram_purity"):
            assert 0.0 < entry[key] <= 1.0
        for key in ("adjusted_rand_index", "random_adjusted_rand_index"):
            assert -1.0 <= entry[key] <= 1.0
    summary = json.loads((out / "results.json").read_text())["summary"]
    last = run["hierarchy"][-1]
    assert summary["htl"]["dendrogram_purity"] == pytest.approx([last["dendrogram_purity"], 0])
    md = (out / "results.md").read_text()
    section = md[md.index("## The learned tree") :]
    (htl_row,) = [line for line in section.splitlines() if line.startswith("| HTL")]
    assert f"{last['dendrogram_purity']:.3f}" in htl_row
    assert f"{last['random_dendrogram_purity']:.3f}" in htl_row
    assert (out / "hierarchy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(loss, seed, hierarchy_entries=None):
    run = {"loss": loss, "seed": seed, "final": {"recall_at_1": 0.5}, "seconds_per_iteration": 1.0,
           "tree_seconds": 0.0, "curve": [{"iteration": 0, "recall_at_1": 0.5}]}  # fmt: skip
    if hierarchy_entries is not None:
        run["hierarchy"] = [
            {"iteration": it, "dendrogram_purity": p, "adjusted_rand_index": a,
             "random_dendrogram_purity": 0.25, "random_adjusted_rand_index": 0.0}
            for it, p, a in hierarchy_entries
        ]  # fmt: skip
    return run


def _cfg(out, losses):
    return RunConfig(losses=losses, seeds=[0, 1], recall_ks=[1], out=str(out),
                     dataset="glyphs", epochs=2, iters_per_epoch=5)  # fmt: skip


def test_reports_show_the_last_trees_mean_and_std_over_seeds(tmp_path):
    from benchmarks.report import write_reports

    runs = [
        _run("triplet", 0),
        _run("triplet", 1),
        _run("htl", 0, [(0, 0.3, 0.1), (5, 0.5, 0.2)]),
        _run("htl", 1, [(0, 0.3, 0.1), (5, 0.7, 0.4)]),
    ]
    titles = {"triplet": "Triplet", "htl": "HTL"}
    md = write_reports(runs, _cfg(tmp_path, ["triplet", "htl"]), {}, titles)
    summary = json.loads((tmp_path / "results.json").read_text())["summary"]
    # the last tree of each seed: purity 0.5 and 0.7, ARI 0.2 and 0.4
    assert summary["htl"]["dendrogram_purity"] == pytest.approx([0.6, 0.1])
    assert summary["htl"]["adjusted_rand_index"] == pytest.approx([0.3, 0.1])
    assert summary["htl"]["random_dendrogram_purity"] == pytest.approx([0.25, 0.0])
    assert "dendrogram_purity" not in summary["triplet"]
    section = md[md.index("## The learned tree") :]
    assert "| loss | dendrogram purity | random tree | ARI | random tree | seeds |" in section
    assert "| HTL | 0.600 ± 0.100 | 0.250 ± 0.000 | 0.300 ± 0.100 | 0.000 ± 0.000 | 2 |" in section
    assert "Triplet" not in section
    assert (tmp_path / "hierarchy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_hierarchy_section_or_plot_without_superclasses(tmp_path):
    from benchmarks.report import write_reports

    md = write_reports([_run("htl", 0)], _cfg(tmp_path, ["htl"]), {}, {"htl": "HTL"})
    assert "learned tree" not in md and not (tmp_path / "hierarchy.png").exists()
