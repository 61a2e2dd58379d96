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


def resized(augment: str, native: int, size: int) -> Transforms:
    """Small images resized from their ``native`` side to ``size`` (for a pretrained
    trunk): the standard augmentation crops to ``size`` directly, light augments at
    the native size, then resizes."""
    import torchvision.transforms as T

    resize = T.Resize((size, size), antialias=True)
    if augment == "standard":
        return augmentation(augment, size), resize
    random_part = augmentation(augment, native)
    return (resize if random_part is None else T.Compose([random_part, resize])), resize


def glyph_transforms(
    augment: str, image_size: Optional[int] = None, normalize: bool = True
) -> Transforms:
    """The glyphs are 32 x 32 tensors already: the augmentation alone, or resized to
    ``image_size`` where the trunk reads it (never normalised: the trunk does)."""
    if image_size is not None:
        return resized(augment, GLYPH_SIZE, image_size)
    return augmentation(augment, GLYPH_SIZE), None


def greyscale_transforms(
    augment: str, image_size: Optional[int] = None, normalize: bool = True
) -> Transforms:
    """Small greyscale images (Fashion-MNIST, 28 x 28): ToTensor, kept at their size
    or resized to ``image_size`` where the trunk reads it."""
    import torchvision.transforms as T

    if image_size is not None:
        train, test = resized(augment, FASHION_MNIST_SIZE, image_size)
        return T.Compose([T.ToTensor(), train]), T.Compose([T.ToTensor(), test])
    random_part = augmentation(augment, FASHION_MNIST_SIZE)
    train = T.ToTensor() if random_part is None else T.Compose([random_part, T.ToTensor()])
    return train, T.ToTensor()


def photo_transforms(augment: str, image_size: Optional[int], normalize: bool = True) -> Transforms:
    """Photos: ImageNet-style resizing to ``image_size`` and ImageNet's normalisation
    (``normalize``; off for a trunk that normalises its input itself)."""
    import torchvision.transforms as T

    size = image_size
    norm = [T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])] if normalize else []
    resize = [T.Resize(int(size * 256 / 224)), T.CenterCrop(size)]
    test = T.Compose([*resize, T.ToTensor(), *norm])
    if augment == "standard":
        train = T.Compose([augmentation(augment, size), T.ToTensor(), *norm])
    else:
        random_part = augmentation(augment, size)
        train = T.Compose([*resize, *([random_part] if random_part else []), T.ToTensor(), *norm])
    return train, test
