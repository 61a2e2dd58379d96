"""HTL under torch.distributed: DistributedDataParallel, PML's loss wrapper, one tree for all ranks.

Shows a hand-written loop started by ``torchrun``: the model in
``DistributedDataParallel`` (gloo on the CPU, nccl on CUDA), the loss in PML's
``DistributedLossWrapper(..., efficient=True)`` (each rank's anchors against
the gathered global batch), the ``AnchorNeighborSampler`` with a seed shared by
every rank and ``set_epoch`` (each rank gets its slice of one global
anchor-neighbour batch), and the ``TreeRebuildHook`` registered with the inner
loss and the sampler: every rank embeds its shard of the training set, the
class statistics are summed across ranks and every rank builds the same tree.
Rank 0 evaluates at the end.

The data are generated (Gaussian blobs around super-class centres), the same
on every rank.

Run::

    torchrun --standalone --nproc_per_node 2 examples/distributed_torchrun.py --smoke
    torchrun --standalone --nproc_per_node 2 examples/distributed_torchrun.py
    python examples/distributed_torchrun.py --smoke   # also runs alone: a group of one
"""

import argparse
import logging
import os

import torch
import torch.distributed as dist
from pytorch_metric_learning.utils import distributed as pml_dist
from recall import recall_at_k
from torch.nn.parallel import DistributedDataParallel
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


def init_distributed(device):
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); started with plain python, form a group of one."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="0")  # 0: any free port
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


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
    parser.add_argument("--seed", type=int, default=0, help="the same on every rank")
    args = parser.parse_args()
    device = init_distributed(torch.device(args.device))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"rank {rank}: %(name)s: %(message)s",
    )
    torch.manual_seed(args.seed)  # the same initial model on every rank
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
    model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    loss_func = pml_dist.DistributedLossWrapper(losses.HierarchicalTripletLoss(), efficient=True)
    # every rank draws the same global batches (shared seed) and takes its slice of them
    sampler = samplers.AnchorNeighborSampler(train_set.labels, anchors_per_batch=4, seed=args.seed)
    loader = DataLoader(train_set, batch_size=sampler.batch_size, sampler=sampler, drop_last=True)
    tree_hook = tree_hooks.TreeRebuildHook(train_set, consumers=[loss_func.loss, sampler])

    for epoch in range(num_epochs):
        sampler.set_epoch(epoch)
        tree_hook.rebuild(model)  # each rank embeds its shard; one tree on every rank
        model.train()
        total = torch.zeros((), device=device)
        for data, labels in loader:
            loss = loss_func(model(data.to(device)), labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach()
        dist.all_reduce(total)
        if rank == 0:  # PML's wrapper returns world_size x the loss (DDP averages gradients)
            mean = total.item() / (world_size**2 * len(loader))
            print(f"epoch {epoch + 1}: mean loss {mean:.4f}, world size {world_size}")

    if rank == 0:
        embeddings, labels = embed(model.module, test_set, device)
        recalls = recall_at_k(embeddings, labels)
        shown = ", ".join(f"R@{k} {r:.3f}" for k, r in recalls.items())
        print(f"test (unseen classes): {shown}")
    dist.barrier()  # the other ranks wait for rank 0's evaluation
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
