"""The glyph data set: deterministic, >= 200 classes, scripts as superclasses,
class split, no look-alike classes, cache, a cache read without the generator's
dependencies."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import pml_htl
from benchmarks.data.glyphs import GlyphDataset, default_cache_dir
from benchmarks.data.glyphs import dataset as G
from benchmarks.data.glyphs import files as glyph_files
from benchmarks.data.glyphs import generator as gen

SPC = 3  # samples per class: small, to keep the tests fast


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two independent builds into two empty cache folders."""
    roots = [tmp_path_factory.mktemp("glyphs_a"), tmp_path_factory.mktemp("glyphs_b")]
    sets = []
    for r in roots:
        gen.clear_inventory_cache()  # scan the fonts again: a full second build
        sets.append(GlyphDataset(str(r), split="all", samples_per_class=SPC, verbose=False))
    return roots, sets


@pytest.fixture(scope="module")
def ds(built):
    return built[1][0]


def test_two_builds_are_bit_identical(built):
    (root_a, root_b), (a, b) = built
    assert os.path.dirname(a.cache_path) == str(root_a)
    assert os.path.dirname(b.cache_path) == str(root_b)
    with np.load(a.cache_path) as za, np.load(b.cache_path) as zb:
        assert sorted(za.files) == sorted(zb.files)
        for key in za.files:
            assert np.array_equal(za[key], zb[key]), key
    # Nothing but the cache file is left behind (atomic write, no tmp files).
    assert os.listdir(root_a) == [os.path.basename(a.cache_path)]


def test_class_count_and_scripts(ds):
    n = ds.num_classes
    assert n >= 200
    assert len(ds.class_names) == n == len(set(ds.class_names))
    assert len(ds.labels) == n * SPC
    assert np.array_equal(np.bincount(ds.labels), np.full(n, SPC))
    assert {"Digits", "Latin", "Greek", "Cyrillic"} <= set(ds.scripts)
    assert np.array_equal(ds.superclass_labels, ds.class_scripts[ds.labels])
    per_script = np.bincount(ds.class_scripts, minlength=len(ds.scripts))
    assert (per_script > 0).sum() >= 5
    assert per_script[ds.scripts.index("Digits")] == 10
    names = set(ds.class_names)
    assert set("0123456789") <= names
    assert set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") <= names
    # The script of a class is that of its character.
    import unicodedata

    for c, s in zip(ds.class_names, ds.class_scripts):
        script = ds.scripts[s]
        if script == "Digits":
            assert c.isdigit()
        else:
            assert unicodedata.name(c).split()[0].upper() == script.upper(), c


def test_split_disjoint_complete_and_every_script_on_both_sides(built):
    root = str(built[0][0])
    train = GlyphDataset(root, split="train", samples_per_class=SPC, verbose=False)
    test = GlyphDataset(root, split="test", samples_per_class=SPC, verbose=False)
    n = train.num_classes
    assert set(train.classes).isdisjoint(test.classes)
    assert sorted(set(train.classes) | set(test.classes)) == list(range(n))
    assert set(np.unique(train.labels)) == set(train.classes)
    assert set(np.unique(test.labels)) == set(test.classes)
    assert len(train.classes) == n // 2  # first half of the classes
    assert train.labels.max() < test.labels.min()  # global ids kept
    assert len(train) + len(test) == n * SPC
    for split in (train, test):
        present = set(split.superclass_labels.tolist())
        assert present == set(range(len(split.scripts))), split.split
        # Upper and lower case Latin on both sides.
        names = [split.class_names[k] for k in split.classes]
        assert any(c.isupper() and c.isascii() for c in names)
        assert any(c.islower() and c.isascii() for c in names)


def test_no_two_classes_look_identical(ds):
    """IoU (grey levels as fuzzy ink: sum min / sum max) of the clean 32x32
    renderings of every pair of classes, in every font they share, and
    across fonts: never above 0.97."""
    clean = torch.from_numpy(ds.clean_images.astype(np.float32) / 255.0)
    fonts = ds.class_fonts
    assert clean.shape[-2:] == (32, 32)
    worst = 0.0
    for f in range(fonts.shape[1]):
        on = np.flatnonzero(fonts[:, f])
        x = clean[on, f].reshape(len(on), -1)
        s = x.double().sum(1)
        l1 = torch.cdist(x, x, p=1).double()
        total = s[:, None] + s[None, :]
        iou = (total - l1) / (total + l1)
        iou.fill_diagonal_(0)
        worst = max(worst, iou.max().item())
    assert worst <= 0.97, worst
    # Across fonts too: sum (a - b)^2 <= sum |a - b| for values in [0, 1], so
    # a Gram matrix finds every pair that could exceed 0.97; their exact IoU
    # is then computed.
    cls, fnt = np.nonzero(fonts)
    x = clean[cls, fnt].reshape(len(cls), -1)
    s, sq = x.sum(1), (x * x).sum(1)
    owner = torch.from_numpy(cls)
    checked = 0
    for b0 in range(0, len(x), 2048):
        d2 = sq[b0 : b0 + 2048, None] + sq[None, :] - 2 * x[b0 : b0 + 2048] @ x.T
        bound = (s[b0 : b0 + 2048, None] + s[None, :]) * (0.03 / 1.97) + 1e-2
        i, j = torch.nonzero(d2 < bound, as_tuple=True)
        i = i + b0
        i, j = i[owner[i] != owner[j]], j[owner[i] != owner[j]]
        l1 = (x[i].double() - x[j].double()).abs().sum(1)
        total = s[i].double() + s[j].double()
        assert ((total - l1) / (total + l1) <= 0.97).all()
        checked += len(i)
    assert checked > 0  # look-alike candidates exist and were checked


def test_homoglyphs_collapsed_near_misses_kept(ds):
    names = set(ds.class_names)
    groups = [
        "AΑА", "BΒВ", "EΕЕ", "HΗН", "KΚ", "MΜМ", "OΟОՕ", "PΡР", "TΤТ", "XΧХ",
        "oοоօ", "aа", "cс", "eе", "pр", "xх", "yу", "ΓГ", "ΠП", "ÐĐ",
    ]  # fmt: skip
    for group in groups:
        assert len(names & set(group)) == 1, group
    for near_miss in ["AΛ", "OQ", "шщ", "ъь", "yγ", "6б", "ΘѲ", "иn"]:
        assert set(near_miss) <= names, near_miss
    dropped = {d for d, _ in ds.homoglyphs}
    assert dropped.isdisjoint(names)
    assert {"А", "Α", "о", "р", "Г"} <= dropped
    for d, rep in ds.homoglyphs:
        assert rep in names


def test_fonts_per_class_and_computer_modern_mapping(ds):
    assert (ds.class_fonts.sum(axis=1) >= 5).all()
    # Each image comes from a font that renders its class.
    assert ds.class_fonts[ds.labels, ds.font_ids].all()
    assert set(ds.font_names) >= {"cmr10", "cmmi10", "DejaVuSans", "STIXGeneral"}
    assert not any(
        n.startswith(("LastResort", "cmex", "cmsy", "STIXSiz", "STIXNonUni")) for n in ds.font_names
    )
    assert not any(n.endswith("Display") for n in ds.font_names)
    # cmap trap (TeX layout, not Unicode): recognise every Computer Modern
    # rendering by its most similar rendering (blurred, cosine) among the 16
    # DejaVu/STIX fonts of all classes. A shifted mapping scores ~0 (chance
    # is 1/num_classes); cmtt10's small typewriter glyphs match less well.
    x = ds.clean_images.astype(np.float32) / 255.0
    gallery_cls, gallery_font = np.nonzero(ds.class_fonts[:, :16])
    assert not any(ds.font_names[f].startswith("cm") for f in range(16))
    gallery = _features(x[gallery_cls, gallery_font])
    for cm, least in [("cmr10", 0.8), ("cmb10", 0.75), ("cmss10", 0.75),
                      ("cmti10", 0.75), ("cmmi10", 0.7), ("cmtt10", 0.3)]:  # fmt: skip
        f = ds.font_names.index(cm)
        classes = np.flatnonzero(ds.class_fonts[:, f])
        guess = gallery_cls[(_features(x[classes, f]) @ gallery.T).argmax(axis=1)]
        assert (guess == classes).mean() >= least, cm
    cmr = ds.font_names.index("cmr10")
    chars = {ds.class_names[k] for k in np.flatnonzero(ds.class_fonts[:, cmr])}
    assert set("ΓΔΘΛΞΠΣΦΨΩ") <= chars
    cmmi = ds.font_names.index("cmmi10")
    for digit in "0123456789":  # cmmi10's digits are old-style: not used
        assert not ds.class_fonts[ds.class_names.index(digit), cmmi]
    # BaKoMa's glyph names: "epsilon" draws ε (not the lunate ϵ), "phi1"
    # the looped φ (not ϕ), "theta" θ (not ϑ). Each cmmi10 rendering must
    # look more like the right variant in the italic reference fonts.
    paths = dict(zip(G.FONT_FILES, glyph_files._font_paths()))
    for ref in ("STIXGeneralItalic.ttf", "DejaVuSerif-Italic.ttf"):
        font = gen._pil_font(paths[ref], 64)
        for good, bad in ["εϵ", "φϕ", "θϑ"]:
            mine = _features(x[ds.class_names.index(good), cmmi][None])[0]
            want, other = (
                _features(gen._downsample(gen._render(font, c, 64))[None])[0] for c in (good, bad)
            )
            assert mine @ want > mine @ other, (ref, good)


def _features(images):
    """Blurred, centred, unit-norm pixel vectors (for nearest-glyph tests)."""
    from scipy import ndimage

    x = ndimage.gaussian_filter(images, (0, 1.0, 1.0)).reshape(len(images), -1)
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_no_empty_or_missing_glyph_renderings(ds):
    x = ds.clean_images.astype(np.float32) / 255.0
    used = ds.class_fonts
    assert (x[used].reshape(used.sum(), -1).sum(axis=1) >= 3).all()
    assert (x[~used] == 0).all()
    for f, path in enumerate(glyph_files._font_paths()):
        box = gen._render(gen._pil_font(path, 64), chr(0x10FFFD), 64)  # in no cmap
        if box is None:  # this font's missing glyph is blank
            continue
        box = gen._downsample(box).ravel()
        glyphs = x[used[:, f], f].reshape(-1, box.size)
        iou = np.minimum(glyphs, box).sum(1) / np.maximum(glyphs, box).sum(1)
        assert iou.max() < 0.9, ds.font_names[f]


def test_items_shapes_and_transform(built):
    root = str(built[0][0])
    d = GlyphDataset(root, split="test", samples_per_class=SPC, verbose=False)
    assert d.images.dtype == np.uint8 and d.images.shape[1:] == (32, 32)
    assert d.labels.dtype == np.int64 and d.superclass_labels.dtype == np.int64
    x, y = d[0]
    assert isinstance(y, int) and y == d.labels[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(x[0], torch.from_numpy(d.images[0]).float() / 255.0)
    loader = torch.utils.data.DataLoader(d, batch_size=16)
    xb, yb = next(iter(loader))
    assert xb.shape == (16, 1, 32, 32) and yb.dtype == torch.int64

    def to_small(img):
        assert img.mode == "L" and img.size == (32, 32)
        return torch.tensor(np.asarray(img.resize((8, 8))), dtype=torch.float32)

    t = GlyphDataset(root, split="test", samples_per_class=SPC, verbose=False,
                     transform=to_small, target_transform=lambda v: v + 1000)  # fmt: skip
    xt, yt = t[0]
    assert xt.shape == (8, 8) and yt == y + 1000
    with pytest.raises(ValueError, match="split"):
        GlyphDataset(root, split="val", samples_per_class=SPC, verbose=False)
    # Images vary: not all samples of a class are the same picture.
    same_class = d.images[d.labels == d.labels[0]]
    assert len({im.tobytes() for im in same_class}) == len(same_class)


def test_cache_reused(built, monkeypatch):
    root = str(built[0][0])
    first = built[1][0]

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(G, "build_glyph_arrays", no_build)
    again = GlyphDataset(root, split="all", samples_per_class=SPC, verbose=False)
    assert again.cache_path == first.cache_path
    assert np.array_equal(again.images, first.images)
    assert np.array_equal(again.labels, first.labels)
    assert again.class_names == first.class_names
    # Other parameters: another cache file (so a build is needed).
    with pytest.raises(AssertionError, match="rebuilt"):
        GlyphDataset(root, split="all", samples_per_class=SPC, seed=1, verbose=False)


def test_env_var_cache_dir_and_num_classes(tmp_path, monkeypatch, built):
    monkeypatch.setenv("PML_HTL_CACHE", str(tmp_path))
    assert default_cache_dir() == os.path.join(str(tmp_path), "glyphs")
    full = built[1][0]
    small = GlyphDataset(split="all", samples_per_class=SPC, num_classes=40, seed=0, verbose=False)
    assert os.path.dirname(small.cache_path) == os.path.join(str(tmp_path), "glyphs")
    # The first classes of the canonical order; a class's images do not
    # depend on how many classes are built.
    assert small.class_names == full.class_names[:40]
    keep = full.labels < 40
    assert np.array_equal(small.images, full.images[keep])
    assert len(set(small.class_scripts.tolist())) == len(small.scripts)
    with pytest.raises(ValueError, match="num_classes"):
        GlyphDataset(split="all", samples_per_class=SPC, num_classes=100000, verbose=False)


# --------------------------------------------------------------------------
# Without the generator's dependencies (the 'glyphs' extra). scipy is not
# blocked: PML imports it (through scikit-learn), so pml_htl needs it anyway.


def _python(code, blocked):
    """Run `code` in a fresh interpreter in which the modules `blocked` (and
    their submodules) cannot be imported."""
    prelude = f"import sys\nfor m in {tuple(blocked)!r}:\n    sys.modules[m] = None\n"
    repo = os.path.dirname(os.path.dirname(pml_htl.__file__))
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=dict(os.environ, PYTHONPATH=path),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_glyphs_module_imports_without_the_generator_dependencies():
    out = _python(
        """
        import pml_htl
        from benchmarks.data.glyphs import (
            GlyphDataset, build_glyph_arrays, default_cache_dir, load_glyph_arrays, dataset
        )
        assert "benchmarks.data.glyphs.generator" not in sys.modules
        print("imported")
        """,
        ("matplotlib", "PIL", "fontTools"),
    )
    assert out.returncode == 0 and out.stdout.split() == ["imported"], out.stderr


@pytest.mark.parametrize("blocked", ["matplotlib", "PIL", "fontTools"])
def test_without_the_extra_a_cached_build_loads_and_a_build_names_the_extra(
    built, tmp_path, blocked
):
    root, ds = str(built[0][0]), built[1][0]
    out = _python(
        f"""
        import hashlib, json
        from benchmarks.data.glyphs import GlyphDataset, build_glyph_arrays
        d = GlyphDataset({root!r}, split="all", samples_per_class={SPC}, verbose=False)
        errors = []
        for build in (
            lambda: GlyphDataset({str(tmp_path)!r}, samples_per_class={SPC}, verbose=False),
            lambda: build_glyph_arrays(samples_per_class=1, num_classes=2, verbose=False),
        ):
            try:
                build()
                errors.append(None)
            except ImportError as e:
                errors.append(str(e))
        digest = hashlib.sha256(d.images.tobytes()).hexdigest()
        print(json.dumps([d.cache_path, digest, d.class_names, errors]))
        """,
        (blocked,),
    )
    assert out.returncode == 0, out.stderr
    path, digest, names, errors = json.loads(out.stdout.splitlines()[-1])
    assert path == ds.cache_path and names == ds.class_names
    assert digest == hashlib.sha256(ds.images.tobytes()).hexdigest()
    for message in errors:
        assert message == (
            f"building the glyph data set needs {blocked} (the 'glyphs' extra): "
            "pip install 'pml_htl[glyphs]'"
        )
    assert os.listdir(tmp_path) == []


def test_without_the_extra_the_newest_build_with_the_parameters_is_read(tmp_path, monkeypatch):
    def no_key(*args):
        raise ImportError("no Pillow")

    monkeypatch.setattr(G, "_cache_key", no_key)
    params = dict(samples_per_class=2, image_size=16, seed=5, num_classes=4)

    def cached(name, mtime, **other):
        key = {**glyph_files._build_params(**params), "pillow": name, **other}
        path = tmp_path / f"{glyph_files._file_prefix(**params)}{name}.npz"
        np.savez(path, _key=np.array(json.dumps(key, sort_keys=True)), images=np.array([mtime]))
        os.utime(path, (mtime, mtime))

    cached("old", 1000)
    cached("new", 2000)
    cached("foreign", 3000, seed=6)  # a key that does not match its name
    arrays, path = G.load_glyph_arrays(str(tmp_path), **params, verbose=False)
    assert os.path.basename(path).endswith("new.npz") and arrays["images"][0] == 2000
    with pytest.raises(ImportError, match="no Pillow"):
        G.load_glyph_arrays(str(tmp_path), **{**params, "seed": 7}, verbose=False)
