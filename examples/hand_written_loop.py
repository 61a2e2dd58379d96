"""HTL in a plain PyTorch training loop, evaluated with Recall@K.

Shows the pieces without PML's trainers: a ``DataLoader`` drawing
anchor-neighbour batches from ``AnchorNeighborSampler``
(``batch_size=sampler.batch_size``), ``HierarchicalTripletLoss``, and a
``TreeRebuildHook`` that rebuilds the class tree from the current model before
the first epoch and before every following one (``hook.rebuild(model)``) and
hands it to the loss and the sampler. At the end the model embeds unseen
classes and Recall@K scores them (``examples/recall.py``).

The data are generated (Gaussian blobs around super-class centres); any data
set of ``(data, label)`` items works, its ``.labels`` listing the labels.

Run::

    python examples/hand_written_loop.py --smoke   # tiny data, seconds
    python examples/hand_written_loop.py           # 200 + 200 classes, 10 epochs
"""

import argparse
import logging

import torch
from recall import recall_at_k
from torch.utils.data import DataLoader, TensorDataset

from pml_htl import losses, samplers, tree_hooks


def make_data(num_classes, per_class, dim, seed=0):
    """Gaussian blobs, 4 classes per super-class; the first half of the classes
    trains, the second half (unseen classes) tests."""
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


@torch.no_grad()
def embed(model, dataset, device):
    model.eval()
    loader = DataLoader(dataset, batch_size=256)
    embeddings, labels = zip(*[(model(x.to(device)), y) for x, y in loader])
    return torch.cat(embeddings), torch.cat(labels).to(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs (seconds)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.smoke:
        train_set, test_set = make_data(num_classes=64, per_class=16, dim=16)
        num_epochs = args.epochs or 2
    else:
        train_set, test_set = make_data(num_classes=400, per_class=40, dim=64)
        num_epochs = args.epochs or 10
    dim = train_set.tensors[0].shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(dim, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32)
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    loss_func = losses.HierarchicalTripletLoss()
    sampler = samplers.AnchorNeighborSampler(train_set.labels, anchors_per_batch=4, seed=0)
    loader = DataLoader(train_set, batch_size=sampler.batch_size, sampler=sampler, drop_last=True)
    tree_hook = tree_hooks.TreeRebuildHook(train_set, consumers=[loss_func, sampler])

    for epoch in range(num_epochs):
        sampler.set_epoch(epoch)
        tree_hook.rebuild(model)  # the tree from the current model: before every epoch
        model.train()
        total = 0.0
        for data, labels in loader:
            loss = loss_func(model(data.to(device)), labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch + 1}: mean loss {total / len(loader):.4f}")

    embeddings, labels = embed(model, test_set, device)
    recalls = recall_at_k(embeddings, labels)  # query = reference
    shown = ", ".join(f"R@{k} {r:.3f}" for k, r in recalls.items())
    print(f"test (unseen classes): {shown}")


if __name__ == "__main__":
    main()
