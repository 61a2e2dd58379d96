"""One pass of a frozen trunk over a data set: eval mode, no gradients."""

from __future__ import annotations

from typing import Tuple

import torch
import tqdm

from pml_htl.tree_hooks import evaluation_mode

#: Images per forward pass of the trunk.
EXTRACT_BATCH_SIZE = 128


def extract(
    trunk: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    device: torch.device,
    num_workers: int = 0,
    desc: str = "features",
    progress: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of every item of ``dataset`` in order, on the CPU: float32
    features of the trunk in eval mode (its mode restored after), int64 labels."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=EXTRACT_BATCH_SIZE, shuffle=False, num_workers=num_workers
    )
    features, labels = [], []
    with evaluation_mode(trunk), torch.no_grad():
        for data, y in tqdm.tqdm(loader, desc=desc, leave=False, disable=not progress):
            features.append(trunk(data.to(device)).float().cpu())
            labels.append(torch.as_tensor(y).long())
    return torch.cat(features), torch.cat(labels)
