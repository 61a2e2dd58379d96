"""The glyph data set's generator: renders the characters from the TrueType
fonts inside matplotlib's wheel and builds the arrays that
:class:`~benchmarks.data.glyphs.dataset.GlyphDataset` loads (and caches).

Needs matplotlib (the fonts), fontTools, Pillow and SciPy, the ``glyphs``
extra: ``pip install 'pml_htl[glyphs]'``. Nothing is downloaded.

Every class is one character (a Unicode code point); every instance is that
character drawn in one of the usable text fonts
(:data:`~benchmarks.data.glyphs.dataset.FONT_FILES`: DejaVu Sans/Serif/Sans Mono in
4 styles, STIXGeneral in 4 styles and the Computer Modern fonts cmr10,
cmb10, cmss10, cmti10, cmtt10, cmmi10) and then randomly augmented (affine
jitter, stroke width, blur, contrast, noise). The superclass of a character
is its script (Digits, Latin, Greek, Cyrillic, Armenian, Georgian, Lao),
which gives a known two-level hierarchy.

How the classes are chosen (all of it deterministic):

* Candidates are the letters (categories Lu, Ll, Lt, Lo) and digits of
  :data:`SCRIPT_RANGES` that are neither NFKC-compatibility characters (ϐ, ſ,
  ligatures) nor precomposed letters with a diacritic (é, Й, ά): classes
  differ by their shape, not by an accent alone.
* Fonts are read with fontTools. The Computer Modern fonts' cmaps follow
  TeX's layout, not Unicode (in cmr10 U+00A1 is Γ), so they are mapped by
  glyph name through the explicit table :data:`CM_GLYPH_NAMES` (checked by
  eye: BaKoMa's ``epsilon`` is ε and ``phi1`` is φ; cmmi10's digits are
  old-style figures and are not used).
* A rendering that is empty, tiny, or that matches the font's missing-glyph
  box is dropped; a character is kept only when at least
  :data:`MIN_FONTS` fonts render it.
* Look-alikes. Clean renderings (32x32, fixed baseline and size) are compared
  with :func:`glyph_iou`, the IoU of their ink with grey levels read as fuzzy
  membership (sum of minima over sum of maxima): binarising would erase the
  hairlines of cmr10 (its H and Π would match). Classes are visited in
  priority order: more fonts first, then script order of :data:`SCRIPTS`,
  then code point. A class whose renderings have IoU > :data:`HOMOGLYPH_IOU`
  with those of an already kept class in at least half of the fonts they
  share is dropped (Latin A stays, Greek Alpha and Cyrillic A go; Cyrillic и
  stays and the archaic Greek ͷ goes). A kept class then loses the single
  renderings (fonts) that are still near-identical to any rendering of a
  kept class of higher priority, in any font (Cyrillic italic и against
  Latin italic u, Armenian ս against u in DejaVu Sans, З against 3 in DejaVu
  Sans Mono). After this, no two classes have clean renderings with IoU
  > 0.97, in the same font or across fonts. Near misses (A/Λ, O/Q, y/γ, ш/щ,
  ъ/ь, 6/б) stay as hard negatives.

Class ids: classes are put in a canonical, interleaved order (each script's
characters in a van der Corput order of their code points, the scripts
merged in proportion), and the global class id of a class is its position in
that order; ``num_classes`` keeps the first classes of the order.

A build takes a few seconds to well under a minute and is bit-identical run
to run on a given installation (same fonts, FreeType, NumPy and SciPy).
Bump :data:`~benchmarks.data.glyphs.dataset.GLYPHS_VERSION` whenever a change here
alters the arrays.
"""

from __future__ import annotations

import os
import unicodedata
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from pml_htl._logging import show_progress

from .files import FONT_FILES, _check_params, _font_paths, _needs_glyphs_extra

try:
    import matplotlib  # noqa: F401  (its wheel holds the fonts)
    from fontTools.ttLib import TTFont
    from PIL import Image, ImageDraw, ImageFont
    from scipy import ndimage
except ImportError as e:
    raise _needs_glyphs_extra(e) from e

__all__ = [
    "CM_GLYPH_NAMES",
    "SCRIPTS",
    "SCRIPT_RANGES",
    "build_glyph_arrays",
    "candidate_characters",
    "clear_inventory_cache",
    "glyph_iou",
    "similar_pairs",
]

#: Superclasses, in label order; also the priority order for look-alikes.
SCRIPTS = ("Digits", "Latin", "Greek", "Cyrillic", "Armenian", "Georgian", "Lao")

#: Code point ranges searched for each script.
SCRIPT_RANGES = {
    "Digits": ((0x30, 0x39),),
    "Latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x17F)),
    "Greek": ((0x370, 0x3FF),),
    "Cyrillic": ((0x400, 0x52F),),
    "Armenian": ((0x531, 0x58F),),
    "Georgian": ((0x10A0, 0x10FF),),
    "Lao": ((0xE81, 0xEAE),),  # consonants
}


def _cm_table() -> Dict[str, str]:
    table = {c: c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}
    digits = "zero one two three four five six seven eight nine".split()
    # cmmi10 has only old-style figures (zerooldstyle, ...): not mapped.
    table.update({str(i): name for i, name in enumerate(digits)})
    table.update(
        {
            # Greek capitals (all six fonts). AGL would send Delta to U+2206
            # and Omega to U+2126: wrong here.
            "\u0393": "Gamma",
            "\u0394": "Delta",
            "\u0398": "Theta",
            "\u039b": "Lambda",
            "\u039e": "Xi",
            "\u03a0": "Pi",
            "\u03a3": "Sigma",
            "\u03a5": "Upsilon",
            "\u03a6": "Phi",
            "\u03a8": "Psi",
            "\u03a9": "Omega",
            # Greek lower case (cmmi10 only). BaKoMa's "epsilon" draws ε and
            # "epsilon1" the lunate ϵ; "phi1" is the looped φ, "phi" is ϕ.
            "\u03b1": "alpha",
            "\u03b2": "beta",
            "\u03b3": "gamma",
            "\u03b4": "delta",
            "\u03b5": "epsilon",
            "\u03b6": "zeta",
            "\u03b7": "eta",
            "\u03b8": "theta",
            "\u03b9": "iota",
            "\u03ba": "kappa",
            "\u03bb": "lambda",
            "\u03bc": "mu",
            "\u03bd": "nu",
            "\u03be": "xi",
            "\u03c0": "pi",
            "\u03c1": "rho",
            "\u03c2": "sigma1",
            "\u03c3": "sigma",
            "\u03c4": "tau",
            "\u03c5": "upsilon",
            "\u03c6": "phi1",
            "\u03c7": "chi",
            "\u03c8": "psi",
            "\u03c9": "omega",
            # Latin letters beyond ASCII.
            "\u00c6": "AE",
            "\u00e6": "ae",
            "\u0152": "OE",
            "\u0153": "oe",
            "\u00d8": "Oslash",
            "\u00f8": "oslash",
            "\u00df": "germandbls",
            "\u0131": "dotlessi",
        }
    )
    return table


#: Character -> glyph name in the Computer Modern (BaKoMa) fonts.
CM_GLYPH_NAMES = _cm_table()

#: A character is a class only if at least this many fonts render it.
MIN_FONTS = 5
#: IoU of the clean 32x32 renderings above which two glyphs look identical.
HOMOGLYPH_IOU = 0.97
#: Size of the clean renderings used for the look-alike analysis.
ANALYSIS_SIZE = 32
#: Font size (em) and baseline height, as fractions of the image size.
EM_FRACTION = 0.69
BASELINE_FRACTION = 0.73
#: Supersampling factor: glyphs are drawn and augmented at this multiple of
#: the output size, then averaged down.
SUPERSAMPLE = 2

_MISSING_CODEPOINT = 0x10FFFD  # in no font's cmap: renders the missing glyph


# --------------------------------------------------------------------------
# Fonts and rendering


def candidate_characters() -> List[Tuple[str, int]]:
    """(character, script index) of every candidate, in priority order."""
    out = []
    for s, script in enumerate(SCRIPTS):
        for a, b in SCRIPT_RANGES[script]:
            for cp in range(a, b + 1):
                c = chr(cp)
                if unicodedata.category(c) not in ("Lu", "Ll", "Lt", "Lo", "Nd"):
                    continue
                if unicodedata.normalize("NFKC", c) != c:
                    continue  # compatibility variant of another character
                if unicodedata.normalize("NFD", c) != c:
                    continue  # letter + diacritic
                out.append((c, s))
    return out


def _font_char_map(path: str) -> Dict[str, str]:
    """Character -> the text to draw with Pillow to get its glyph."""
    font = TTFont(path, lazy=True)
    cmap = font.getBestCmap() or {}
    font.close()
    if os.path.basename(path).startswith("cm"):
        # TeX layout: find, for each wanted glyph name, a code point that
        # the font's own cmap sends to it.
        code_of_glyph = {}
        for cp, glyph in sorted(cmap.items()):
            code_of_glyph.setdefault(glyph, cp)
        return {c: chr(code_of_glyph[g]) for c, g in CM_GLYPH_NAMES.items() if g in code_of_glyph}
    return {chr(cp): chr(cp) for cp, glyph in cmap.items() if glyph != ".notdef"}


def _pil_font(path: str, canvas: int):
    return ImageFont.truetype(
        path,
        size=int(round(EM_FRACTION * canvas)),
        layout_engine=ImageFont.Layout.BASIC,
    )


def _render(pil_font, text: str, canvas: int) -> Optional[np.ndarray]:
    """Draw `text` white on black in a canvas x canvas float32 image.

    Fixed font size and baseline (so o/O and p/P differ by size and
    position), ink centred horizontally. The rare glyph too large for the
    canvas is shrunk to fit. None when nothing is drawn.
    """
    top = canvas // 2
    img = Image.new("L", (3 * canvas, 2 * canvas))
    ImageDraw.Draw(img).text(
        (canvas, top + BASELINE_FRACTION * canvas),
        text,
        font=pil_font,
        fill=255,
        anchor="ls",
    )
    a = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    rows = np.flatnonzero(a.max(axis=1) > 0)
    cols = np.flatnonzero(a.max(axis=0) > 0)
    if len(rows) == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    w, h = c1 - c0, r1 - r0
    if r0 >= top and r1 <= top + canvas and w <= canvas:
        x0 = (c0 + c1 - canvas) // 2
        return np.ascontiguousarray(a[top : top + canvas, x0 : x0 + canvas])
    f = min((canvas - 2) / w, (canvas - 2) / h, 1.0)
    nw, nh = max(1, int(round(w * f))), max(1, int(round(h * f)))
    crop = Image.fromarray(np.ascontiguousarray(a[r0:r1, c0:c1]))
    crop = np.asarray(crop.resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    out = np.zeros((canvas, canvas), np.float32)
    cy = (r0 + r1) / 2 - top
    y0 = int(round(min(max(cy - nh / 2, 0), canvas - nh)))
    x0 = (canvas - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = np.clip(crop, 0, 1)
    return out


def _downsample(a: np.ndarray, f: int = SUPERSAMPLE) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float32)


def glyph_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two glyph images, the grey levels read as fuzzy ink:
    sum(min(a, b)) / sum(max(a, b)) (for black-and-white images it is the
    usual intersection over union). uint8 images are scaled to [0, 1].

    Grey levels matter: binarising at 0.5 erases the hairlines of cmr10 at
    32x32, and its H and Pi then look identical.
    """
    a, b = _as_unit(a), _as_unit(b)
    union = np.maximum(a, b).sum(dtype=np.float64)
    return float(np.minimum(a, b).sum(dtype=np.float64) / union) if union else 0.0


def _as_unit(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return np.asarray(x, dtype=np.float32)


def similar_pairs(
    images: np.ndarray, threshold: float = HOMOGLYPH_IOU, block: int = 1024
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j of `images` (n, H, W) with :func:`glyph_iou` > threshold.

    Exact and fast: with S = sum(a) + sum(b) and L1 = sum|a - b|, the IoU is
    (S - L1) / (S + L1), so IoU > t means L1 < S (1 - t) / (1 + t); since
    sum (a - b)^2 <= L1 for values in [0, 1], a Gram matrix picks the
    candidates and their L1 is then computed exactly. Returns (i, j, iou).
    """
    x = _as_unit(images).reshape(len(images), -1)
    sums = x.sum(axis=1, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    ratio = (1.0 - threshold) / (1.0 + threshold)
    rows, cols = [], []
    for b0 in range(0, len(x), block):
        b1 = min(b0 + block, len(x))
        d2 = sq[b0:b1, None] + sq[None, :] - 2.0 * (x[b0:b1] @ x.T)
        bound = ratio * (sums[b0:b1, None] + sums[None, :]) + 1e-3
        r, c = np.nonzero(d2 < bound)
        keep = c > r + b0
        rows.append(r[keep] + b0)
        cols.append(c[keep])
    i = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    j = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    total = sums[i] + sums[j]
    l1 = np.zeros(len(i))
    for c0 in range(0, len(i), 4096):
        sl = slice(c0, c0 + 4096)
        l1[sl] = np.abs(x[i[sl]] - x[j[sl]]).sum(axis=1, dtype=np.float64)
    iou = np.where(total + l1 > 0, (total - l1) / np.maximum(total + l1, 1e-12), 0.0)
    hit = iou > threshold
    return i[hit].astype(np.int64), j[hit].astype(np.int64), iou[hit]


# --------------------------------------------------------------------------
# Inventory: which characters, which fonts, which look-alikes


def _scan_fonts(verbose: bool = True) -> dict:
    """Render every candidate in every font at the analysis size."""
    cands = candidate_characters()
    paths = _font_paths()
    n, nf = len(cands), len(paths)
    canvas = ANALYSIS_SIZE * SUPERSAMPLE
    clean = np.zeros((n, nf, ANALYSIS_SIZE, ANALYSIS_SIZE), np.float32)
    good = np.zeros((n, nf), bool)
    bad = []  # (character, font, reason)
    for fi, path in enumerate(
        tqdm(paths, desc="glyphs: scanning fonts", disable=not (verbose and show_progress()))
    ):
        cmap = _font_char_map(path)
        font = _pil_font(path, canvas)
        missing = _render(font, chr(_MISSING_CODEPOINT), canvas)
        missing = None if missing is None else _downsample(missing)
        for ci, (c, _) in enumerate(cands):
            if c not in cmap:
                continue
            r = _render(font, cmap[c], canvas)
            if r is None:
                bad.append((c, fi, "empty"))
                continue
            small = _downsample(r)
            if small.sum() < 3:
                bad.append((c, fi, "tiny"))
                continue
            if missing is not None and glyph_iou(small, missing) > 0.9:
                bad.append((c, fi, "missing-glyph box"))
                continue
            clean[ci, fi] = small
            good[ci, fi] = True
    return {"candidates": cands, "clean": clean, "good": good, "bad": bad}


def _select_classes(scan: dict) -> dict:
    """Apply the font-count rule and collapse look-alikes (see module doc)."""
    cands, good = scan["candidates"], scan["good"]
    # The analysis runs on the uint8 images that are stored with the data.
    clean = np.rint(scan["clean"] * 255.0).astype(np.uint8)
    enough = np.flatnonzero(good.sum(axis=1) >= MIN_FONTS)
    g = good[enough]
    n, nf = g.shape
    # Priority: more fonts first (more varied instances), then script order,
    # then code point. The representative of a look-alike group is the
    # first of its members in this order: Latin A over Greek Alpha and
    # Cyrillic A, Cyrillic и over the archaic Greek ͷ.
    nfonts = g.sum(axis=1)
    prio = sorted(
        range(n),
        key=lambda i: (-nfonts[i], cands[enough[i]][1], ord(cands[enough[i]][0])),
    )
    rank = np.empty(n, np.int64)
    rank[prio] = np.arange(n)

    # Every clean rendering against every other one, all fonts.
    rc, rf = np.nonzero(g)  # rendering -> (class row, font)
    pi, pj, _ = similar_pairs(clean[enough[rc], rf])
    pairs = [(a, b) for a, b in zip(pi, pj) if rc[a] != rc[b]]

    # Class level: fonts in which both render and look identical.
    shared = g.astype(np.int32) @ g.T.astype(np.int32)
    same = np.zeros((n, n), np.int32)
    for a, b in pairs:
        if rf[a] == rf[b]:
            same[rc[a], rc[b]] += 1
            same[rc[b], rc[a]] += 1
    kept: List[int] = []
    homoglyphs = []  # (dropped, representative, fonts identical, fonts shared)
    for i in prio:
        rep = next(
            (j for j in kept if shared[i, j] and 2 * same[i, j] >= shared[i, j]),
            None,
        )
        if rep is None:
            kept.append(i)
        else:
            homoglyphs.append(
                (
                    cands[enough[i]][0],
                    cands[enough[rep]][0],
                    int(same[i, rep]),
                    int(shared[i, rep]),
                )
            )

    # Rendering level: a kept class loses each rendering that still looks
    # identical to a rendering (any font) of a kept class of higher priority.
    is_kept = np.zeros(n, bool)
    is_kept[kept] = True
    alive = is_kept[rc].copy()
    pruned = []  # (character, font index, character it looks like)
    by_priority = sorted(
        (p for p in pairs if is_kept[rc[p[0]]] and is_kept[rc[p[1]]]),
        key=lambda p: (max(rank[rc[p[0]]], rank[rc[p[1]]]), min(rank[rc[p[0]]], rank[rc[p[1]]])),
    )
    for a, b in by_priority:
        lo, hi = (a, b) if rank[rc[a]] > rank[rc[b]] else (b, a)
        if alive[lo] and alive[hi]:
            alive[lo] = False
            pruned.append((cands[enough[rc[lo]]][0], int(rf[lo]), cands[enough[rc[hi]]][0]))
    fonts = np.zeros((n, nf), bool)
    fonts[rc[alive], rf[alive]] = True
    final = [i for i in sorted(kept) if fonts[i].sum() >= MIN_FONTS]
    too_few = [cands[enough[i]][0] for i in kept if fonts[i].sum() < MIN_FONTS]
    idx = enough[final]
    return {
        "chars": [cands[i][0] for i in idx],
        "scripts": np.array([cands[i][1] for i in idx], np.int64),
        "fonts": fonts[final],
        "clean": clean[idx] * fonts[final][:, :, None, None],
        "homoglyphs": homoglyphs,
        "pruned": pruned,
        "too_few_after_pruning": too_few,
    }


_INVENTORY: Dict[tuple, dict] = {}


def _inventory(verbose: bool = True) -> dict:
    """The kept classes, their fonts and clean renderings: computed once per
    process and font set (:func:`clear_inventory_cache` forgets it)."""
    fingerprint = tuple((p, os.path.getsize(p)) for p in _font_paths())
    if fingerprint not in _INVENTORY:
        _INVENTORY.clear()
        _INVENTORY[fingerprint] = _select_classes(_scan_fonts(verbose))
    return _INVENTORY[fingerprint]


def clear_inventory_cache() -> None:
    """Forget the in-process font scan (the next build scans the fonts)."""
    _INVENTORY.clear()


def _van_der_corput_positions(n: int) -> np.ndarray:
    """positions[r]: where rank r lands in a bit-reversed (spread) order."""
    bits = max(1, (n - 1).bit_length())
    rev = [int(format(r, f"0{bits}b")[::-1], 2) for r in range(n)]
    order = np.argsort(rev, kind="stable")
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n)
    return pos


def _canonical_order(chars: Sequence[str], scripts: np.ndarray) -> np.ndarray:
    """Indices of the classes in the canonical (interleaved) order."""
    keys = np.zeros(len(chars))
    for s in np.unique(scripts):
        members = np.flatnonzero(scripts == s)
        members = members[np.argsort([ord(chars[m]) for m in members])]
        pos = _van_der_corput_positions(len(members))
        keys[members] = (pos + 0.5) / len(members)
    return np.lexsort((scripts, keys))


# --------------------------------------------------------------------------
# Augmentation


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def _augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view of a clean supersampled rendering -> float32 image at
    the output size (values in [0, 1])."""
    size = img.shape[0]
    # Stroke width. Thicker: blend towards a grey dilation. Thinner: a power
    # of the intensity combined with a 3x3 erosion; the power keeps the
    # fully inked core of hairlines, so thin strokes are never erased.
    t = rng.uniform(-1.0, 1.0)
    if t > 0:
        fat = ndimage.grey_dilation(img, footprint=_CROSS)
        if t <= 0.5:
            img = img + (fat - img) * np.float32(2 * t)
        else:
            fatter = ndimage.grey_dilation(fat, size=(3, 3))
            img = fat + (fatter - fat) * np.float32(2 * t - 1)
    else:
        thin = ndimage.grey_erosion(img, footprint=_CROSS)
        img = np.maximum(thin, img ** np.float32(1.0 - 1.5 * t))
    # Affine jitter: rotation, shear, scale, aspect, translation.
    angle = np.deg2rad(rng.uniform(-10.0, 10.0))
    shear = rng.uniform(-0.2, 0.2)
    scale = rng.uniform(0.85, 1.1)
    aspect = np.exp(rng.uniform(-0.1, 0.1))
    shift = rng.uniform(-0.07, 0.07, size=2) * size
    cos, sin = np.cos(angle), np.sin(angle)
    forward = (
        np.array([[cos, -sin], [sin, cos]])
        @ np.array([[1.0, 0.0], [shear, 1.0]])
        @ np.diag([scale / aspect, scale * aspect])
    )  # (row, col) -> (row, col), about the centre
    inverse = np.linalg.inv(forward)
    centre = np.array([(size - 1) / 2.0, (size - 1) / 2.0])
    offset = centre - inverse @ (centre + shift)
    img = ndimage.affine_transform(img, inverse, offset=offset, order=1, mode="constant", cval=0.0)
    # Blur (sigma in supersampled pixels).
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        img = ndimage.gaussian_filter(img, sigma, mode="constant")
    img = _downsample(img.astype(np.float32))
    # Contrast and noise.
    ink = rng.uniform(0.65, 1.0)
    background = rng.uniform(0.0, 0.12)
    noise = rng.uniform(0.0, 0.06)
    img = background + (ink - background) * img
    img = img + rng.normal(0.0, noise, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------
# Building


def build_glyph_arrays(
    samples_per_class: int = 40,
    image_size: int = 32,
    seed: int = 0,
    num_classes: Optional[int] = None,
    verbose: bool = True,
) -> Dict[str, np.ndarray]:
    """Generate the whole data set (every split) as NumPy arrays.

    Class ``k`` (global id) gets ``samples_per_class`` images; sample ``j``
    uses the ``j``-th font of a per-class random permutation of the fonts
    that render it (cycling), then one random augmentation. Each class has
    its own random stream seeded by ``(seed, code point)``, so a class's
    images do not depend on ``num_classes``.
    """
    _check_params(samples_per_class, image_size, seed, num_classes)
    inventory = _inventory(verbose)
    order = _canonical_order(inventory["chars"], inventory["scripts"])
    if num_classes is not None:
        if num_classes > len(order):
            raise ValueError(
                f"num_classes={num_classes} but the fonts give only {len(order)} glyph classes"
            )
        order = order[:num_classes]
    chars = [inventory["chars"][i] for i in order]
    fonts = inventory["fonts"][order]
    paths = _font_paths()
    canvas = image_size * SUPERSAMPLE
    char_maps: Dict[int, Dict[str, str]] = {}
    pil_fonts: Dict[int, object] = {}

    n = len(chars) * samples_per_class
    images = np.empty((n, image_size, image_size), np.uint8)
    labels = np.repeat(np.arange(len(chars), dtype=np.int64), samples_per_class)
    font_ids = np.empty(n, np.int16)
    bar = tqdm(
        total=n, desc="glyphs: rendering", disable=not (verbose and show_progress()), unit="img"
    )
    for k, c in enumerate(chars):
        rng = np.random.default_rng(np.random.SeedSequence([seed, ord(c)]))
        usable = np.flatnonzero(fonts[k])
        usable = usable[rng.permutation(len(usable))]
        sources = {}
        for f in usable:
            if f not in pil_fonts:
                char_maps[f] = _font_char_map(paths[f])
                pil_fonts[f] = _pil_font(paths[f], canvas)
            sources[f] = _render(pil_fonts[f], char_maps[f][c], canvas)
        for j in range(samples_per_class):
            f = usable[j % len(usable)]
            img = _augment(sources[f], rng)
            i = k * samples_per_class + j
            images[i] = np.rint(img * 255.0).astype(np.uint8)
            font_ids[i] = f
        bar.update(samples_per_class)
    bar.close()

    def pairs(rows):
        return np.array([[ord(r[0]), ord(r[1])] for r in rows], np.int32).reshape(-1, 2)

    return {
        "images": images,
        "labels": labels,
        "font_ids": font_ids,
        "class_codepoints": np.array([ord(c) for c in chars], np.int32),
        "class_scripts": inventory["scripts"][order],
        "class_fonts": fonts,
        "clean_images": inventory["clean"][order],
        "scripts": np.array(SCRIPTS),
        "font_names": np.array([os.path.splitext(f)[0] for f in FONT_FILES]),
        "homoglyphs": pairs(inventory["homoglyphs"]),
        "pruned_renderings": np.array(
            [[ord(c), f, ord(o)] for c, f, o in inventory["pruned"]], np.int32
        ).reshape(-1, 3),
    }
