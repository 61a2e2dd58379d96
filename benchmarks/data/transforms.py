"""Image transforms: the evaluation view of each kind of data, and the training
augmentation on top of it.

standard: the photo recipe of the metric-learning literature (random resized crops
down to 8% of the image, horizontal flips); light: small shifts and rotations (what
suits characters and other images whose meaning a big crop or a flip destroys);
none: the evaluation view.
"""

from __future__ import annotations

from typing import Callable, Optional

from benchmarks.data.spec import Transforms

AUGMENTATIONS = ("standard", "light", "none")
#: --augment light: rotations up to this many degrees, shifts up to this fraction.
LIGHT_DEGREES, LIGHT_SHIFT = 10, 0.1
#: The side of the glyphs' tensors and of Fashion-MNIST's images.
GLYPH_SIZE, FASHION_MNIST_SIZE = 32, 28


def augmentation(name: str, size: int) -> Optional[Callable]:
    """The random part of the training transform, or None; it works on PIL images
    and on tensors alike."""
    import torchvision.transforms as T

    if name == "standard":
        return T.Compose([T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip()])
    if name == "light":
        return T.RandomAffine(LIGHT_DEGREES, translate=(LIGHT_SHIFT, LIGHT_SHIFT))
    return None


def glyph_transforms(augment: str, image_size: Optional[int] = None) -> Transforms:
    """The glyphs are 32 x 32 tensors already: the augmentation alone."""
    return augmentation(augment, GLYPH_SIZE), None


def greyscale_transforms(augment: str, image_size: Optional[int] = None) -> Transforms:
    """Small greyscale images (Fashion-MNIST, 28 x 28): ToTensor, kept at their size."""
    import torchvision.transforms as T

    random_part = augmentation(augment, FASHION_MNIST_SIZE)
    train = T.ToTensor() if random_part is None else T.Compose([random_part, T.ToTensor()])
    return train, T.ToTensor()


def photo_transforms(augment: str, image_size: Optional[int]) -> Transforms:
    """Photos: ImageNet-style resizing and normalisation to ``image_size``."""
    import torchvision.transforms as T

    size = image_size
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    resize = [T.Resize(int(size * 256 / 224)), T.CenterCrop(size)]
    test = T.Compose([*resize, T.ToTensor(), norm])
    if augment == "standard":
        train = T.Compose([augmentation(augment, size), T.ToTensor(), norm])
    else:
        random_part = augmentation(augment, size)
        train = T.Compose([*resize, *([random_part] if random_part else []), T.ToTensor(), norm])
    return train, test
