"""HTL in a PML trainer: MetricLossOnly, HookContainer logging, a tester, the tree hook.

Shows a pytorch-metric-learning pipeline with the Hierarchical Triplet Loss
plugged in: ``HierarchicalTripletLoss``, the ``AnchorNeighborSampler`` (the
trainer's ``batch_size`` is the sampler's), and one ``TreeRebuildHook`` giving
both the class tree. The hook is called
once before training (the initial tree) and after every epoch, chained with
the ``HookContainer``'s end-of-epoch hook (a ``GlobalEmbeddingSpaceTester`` on
unseen classes, record-keeper CSV and TensorBoard logs, model saving). With
``collect_stats=True`` record-keeper also logs HTL's ``num_triplets``,
``num_violating_triplets`` and ``mean_margin``.

No miner: the loss takes every triplet of the batch, the paper's mean over all
triplets. (``miners.HierarchicalTripletMiner``, registered with the same hook,
gives HTL's violating triplets to another PML loss.)

The data are generated (Gaussian blobs around super-class centres, so the class
tree has structure to find); use your own data sets instead: items are
``(data, label)`` and ``.labels`` lists the labels, as in PML's data sets.

Run (logs in ``--out``; logging needs ``pip install "pml_htl[hooks]"``, i.e.
record-keeper and tensorboard, else the script says so and only tests)::

    python examples/train_with_pml_trainer.py --smoke   # tiny data, seconds
    python examples/train_with_pml_trainer.py           # 200 + 200 classes, 10 epochs
"""

import argparse
import importlib.util
import logging
import os
import sys

if not sys.stderr.isatty():  # no tqdm bars from PML's trainer and tester in log files
    os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from pytorch_metric_learning import testers, trainers  # PML 2 only: PML 3 has no trainers
from pytorch_metric_learning.utils import logging_presets
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from recall import recall_at_k
from torch.utils.data import TensorDataset

from pml_htl import losses, samplers, tree_hooks


def make_data(num_classes, per_class, dim, seed=0):
    """Gaussian blobs, 4 classes per super-class; the first half of the classes
    trains, the second half (unseen classes) validates."""
    g = torch.Generator().manual_seed(seed)
    groups = 3 * torch.randn((num_classes + 3) // 4, dim, generator=g)
    centres = groups.repeat_interleave(4, 0)[:num_classes]
    centres = centres + torch.randn(num_classes, dim, generator=g)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    data = centres[labels] + 0.7 * torch.randn(len(labels), dim, generator=g)
    train = labels < num_classes // 2
    train_set = TensorDataset(data[train], labels[train])
    train_set.labels = labels[train].numpy()  # the sampler and the hook read the labels
    return train_set, TensorDataset(data[~train], labels[~train])


class TesterOnly:
    """Stands in for PML's HookContainer without record-keeper: tests every
    epoch, logs and saves nothing (PML's own EmptyContainer would not test)."""

    end_of_iteration_hook = None
    end_of_testing_hook = None

    def end_of_epoch_hook(self, tester, dataset_dict, model_folder, test_interval=1):
        def hook(trainer):
            if trainer.epoch % test_interval == 0:
                models = trainer.models
                tester.test(dataset_dict, trainer.epoch, models["trunk"], models["embedder"])
            return True

        return hook


def make_hook_container(folder, log_freq):
    """PML's HookContainer with record-keeper logs, or TesterOnly without them."""
    if not all(importlib.util.find_spec(m) for m in ("record_keeper", "tensorboard")):
        print(
            'record-keeper or tensorboard is not installed (pip install "pml_htl[hooks]"): '
            "testing every epoch, without logs or saved models"
        )
        return TesterOnly()
    record_keeper, _, _ = logging_presets.get_record_keeper(
        os.path.join(folder, "csv"), os.path.join(folder, "tensorboard")
    )
    print(f"record-keeper logs in {folder}")
    return logging_presets.get_hook_container(record_keeper, log_freq=log_freq)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs (seconds)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", default="results/examples/train_with_pml_trainer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.smoke:
        train_set, val_set = make_data(num_classes=64, per_class=16, dim=16)
        num_epochs, log_freq = args.epochs or 2, 2
    else:
        train_set, val_set = make_data(num_classes=400, per_class=40, dim=64)
        num_epochs, log_freq = args.epochs or 10, 20
    dim = train_set.tensors[0].shape[1]
    trunk = torch.nn.Sequential(torch.nn.Linear(dim, 128), torch.nn.ReLU()).to(device)
    embedder = torch.nn.Linear(128, 32).to(device)
    optimizers = {
        "trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=1e-3),
        "embedder_optimizer": torch.optim.Adam(embedder.parameters(), lr=1e-3),
    }
    hooks = make_hook_container(args.out, log_freq)  # PML: logging_presets.get_hook_container
    model_folder = os.path.join(args.out, "models")

    loss_func = losses.HierarchicalTripletLoss(collect_stats=True)
    sampler = samplers.AnchorNeighborSampler(train_set.labels, anchors_per_batch=4, seed=0)
    # The class tree for the loss and the sampler, rebuilt from the current model by
    # embedding the training set without augmentation (here it has none).
    tree_hook = tree_hooks.TreeRebuildHook(train_set, consumers=[loss_func, sampler])

    tester = testers.GlobalEmbeddingSpaceTester(
        end_of_testing_hook=hooks.end_of_testing_hook,
        accuracy_calculator=AccuracyCalculator(
            include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count"
        ),
        data_device=device,
        dataloader_num_workers=0,  # in-memory tensors
    )
    end_of_epoch_hook = hooks.end_of_epoch_hook(tester, {"val": val_set}, model_folder)
    trainer = trainers.MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers=optimizers,
        batch_size=sampler.batch_size,  # l' m t: whole anchor-neighbour batches
        loss_funcs={"metric_loss": loss_func},
        dataset=train_set,
        sampler=sampler,
        data_device=device,
        dataloader_num_workers=0,  # in-memory tensors
        end_of_iteration_hook=hooks.end_of_iteration_hook,
        end_of_epoch_hook=tree_hooks.chain_hooks(tree_hook, end_of_epoch_hook),
    )
    tree_hook(trainer)  # the initial tree, from the starting model
    trainer.train(num_epochs=num_epochs)

    embeddings, labels = tester.get_all_embeddings(val_set, trunk, embedder)
    recalls = recall_at_k(embeddings, labels[:, 0])
    shown = ", ".join(f"R@{k} {r:.3f}" for k, r in recalls.items())
    print(f"val (unseen classes) after epoch {trainer.epoch}: {shown}")


if __name__ == "__main__":
    main()
