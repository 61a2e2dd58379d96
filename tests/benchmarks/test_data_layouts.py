"""CUB-200-2011, Cars196 (both layouts), SOP and In-shop (both layouts) on generated
miniature copies of their official files: loading, class splits, 3-channel images
whatever the file's mode, Recall@K cut-offs, In-shop's query/gallery rule, each
malformed case's one-line error, and compare.py end to end on every copy.

The copies keep the official formats (header and count lines, 1-based ids, SOP's
super-class column, In-shop's paths) and hold, in every split, a grey (mode L) and a
CMYK JPEG beside RGB ones. Expected numbers are counted by hand from the constants
below, never from the code under test.
"""

import json
import os
import re

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import benchmarks.training.run
from benchmarks import cli, compare
from benchmarks.data import DataError, DataSplits, RGBFirst, load_dataset
from benchmarks.evaluation import recall_ks

# --------------------------------------------------------------------------- fakes
PER_CLASS = 3
#: In every split, the first image is grey and the second CMYK; the others RGB.
SPECIAL_MODES = ("L", "CMYK")

CUB_CLASSES = {"train": [1, 2, 3, 4], "test": [101, 102, 103, 104]}
CARS_CLASSES = {"train": [1, 2, 3, 4], "test": [99, 100, 101, 102]}
#: 196 class names; class 3 has a "/" (PML's folder name has a "-" there).
CAR_NAMES = [f"Make{c} Model{c} Sedan 2012" for c in range(1, 197)]
CAR_NAMES[2] = "Ram C/V Cargo Van Minivan 2012"
SOP_CLASSES = {"train": [1, 2, 3, 4], "test": [11319, 11320, 11321, 11322]}
SOP_SUPER = ["bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle"]
INSHOP_ITEMS = {
    "train": [
        (1, "WOMEN/Blouses_Shirts"),
        (2, "WOMEN/Dresses"),
        (3, "MEN/Denim"),
        (4, "MEN/Tees_Tanks"),
    ],
    "test": [(5, "WOMEN/Dresses"), (6, "MEN/Denim"), (7, "WOMEN/Blouses_Shirts")],
}
INSHOP_TRAIN_IMAGES, INSHOP_QUERY_IMAGES, INSHOP_GALLERY_IMAGES = 3, 2, 4


class ModeCounter:
    """The mode of the next image of each split: L, then CMYK, then RGB."""

    def __init__(self):
        self.seen = {}

    def __call__(self, split: str) -> str:
        n = self.seen.get(split, 0)
        self.seen[split] = n + 1
        return SPECIAL_MODES[n] if n < len(SPECIAL_MODES) else "RGB"


def write_jpeg(path, mode: str, seed: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, "JPEG")


def write_lines(path, lines) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def make_cub(root, classes=CUB_CLASSES):
    base = os.path.join(root, "CUB_200_2011")
    mode = ModeCounter()
    images, labels, train_test, names = [], [], [], []
    image_id = 0
    for split, ids in classes.items():
        for c in ids:
            folder = f"{c:03d}.Bird_Number_{c}"
            names.append(f"{c} {folder}")
            for i in range(PER_CLASS):
                image_id += 1
                rel = f"{folder}/Bird_Number_{c}_{i + 1:04d}_{7000 + image_id}.jpg"
                write_jpeg(os.path.join(base, "images", rel), mode(split), image_id)
                images.append(f"{image_id} {rel}")
                labels.append(f"{image_id} {c}")
                train_test.append(f"{image_id} {int(i < 2)}")  # the classification split
    write_lines(os.path.join(base, "images.txt"), images)
    write_lines(os.path.join(base, "image_class_labels.txt"), labels)
    write_lines(os.path.join(base, "train_test_split.txt"), train_test)
    write_lines(os.path.join(base, "classes.txt"), names)
    return root


def make_cars_official(root, classes=CARS_CLASSES):
    mode = ModeCounter()
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    rows = []
    for split, ids in classes.items():
        for c in ids:
            for i in range(PER_CLASS):
                rel = f"car_ims/{len(rows) + 1:06d}.jpg"
                write_jpeg(os.path.join(root, rel), mode(split), len(rows))
                box = [np.uint16(v) for v in (1, 2, 10, 11)]
                rows.append((rel, *box, np.uint8(c), np.uint8(i % 2)))
    annotations = np.empty(len(rows), dtype=[(f, object) for f in fields])
    for k, row in enumerate(rows):
        annotations[k] = row
    names = np.array(CAR_NAMES, dtype=object)
    scipy.io.savemat(
        os.path.join(root, "cars_annos.mat"), {"annotations": annotations, "class_names": names}
    )
    return root


def make_cars_csv(root, classes=CARS_CLASSES, names_header=None):
    """PML's layout: each class has images in both of the classification split's
    files (anno_train.csv, anno_test.csv) and folders."""
    mode = ModeCounter()
    annos = {"train": [], "test": []}
    for split, ids in classes.items():
        for c in ids:
            for i in range(PER_CLASS):
                part = "train" if i % 2 == 0 else "test"
                name = f"{len(annos[part]) + 1:05d}.jpg"
                folder = CAR_NAMES[c - 1].replace("/", "-")
                path = os.path.join(root, "car_data", "car_data", part, folder, name)
                write_jpeg(path, mode(split), c * 10 + i)
                annos[part].append(f"{name},1,2,10,11,{c}")
    header = [names_header] if names_header else []
    write_lines(os.path.join(root, "names.csv"), header + CAR_NAMES)
    for part, lines in annos.items():
        write_lines(os.path.join(root, f"anno_{part}.csv"), lines)
    return root


def make_sop(root, classes=SOP_CLASSES):
    base = os.path.join(root, "Stanford_Online_Products")
    mode = ModeCounter()
    for split, ids in classes.items():
        lines = ["image_id class_id super_class_id path"]
        for c in ids:
            super_id = c % len(SOP_SUPER) + 1
            for i in range(PER_CLASS):
                rel = f"{SOP_SUPER[super_id - 1]}_final/{111085122000 + c}_{i}.JPG"
                write_jpeg(os.path.join(base, rel), mode(split), c * 10 + i)
                lines.append(f"{len(lines)} {c} {super_id} {rel}")
        write_lines(os.path.join(base, f"Ebay_{split}.txt"), lines)
    return root


def make_inshop(root, official=True, items=INSHOP_ITEMS):
    list_path = os.path.join(root, "Eval" if official else "", "list_eval_partition.txt")
    image_root = os.path.join(root, "Img") if official else root
    mode = ModeCounter()
    rows = []
    views = ["front", "side", "back", "full", "additional", "flat"]

    def add(item, category, status, n):
        for k in range(n):
            rel = f"img/{category}/id_{item:08d}/{len(rows) % 9 + 1:02d}_{k + 1}_{views[k]}.jpg"
            write_jpeg(os.path.join(image_root, rel), mode(status), len(rows))
            rows.append(f"{rel:<60}id_{item:08d}      {status}")

    for item, category in items["train"]:
        add(item, category, "train", INSHOP_TRAIN_IMAGES)
    for item, category in items["test"]:
        add(item, category, "query", INSHOP_QUERY_IMAGES)
    for item, category in items["test"]:
        add(item, category, "gallery", INSHOP_GALLERY_IMAGES)
    write_lines(list_path, [str(len(rows)), "image_name item_id evaluation_status", *rows])
    return root


FAKES = {
    "cub": ("cub", make_cub),
    "cars196-official": ("cars196", make_cars_official),
    "cars196-csv": ("cars196", make_cars_csv),
    "sop": ("sop", make_sop),
    "inshop-official": ("inshop", lambda root: make_inshop(root, official=True)),
    "inshop-flat": ("inshop", lambda root: make_inshop(root, official=False)),
}
#: (classes, images) per split, counted by hand from the constants above.
EXPECTED_SPLITS = {
    "cub": {"train": (4, 12), "test": (4, 12)},
    "cars196-official": {"train": (4, 12), "test": (4, 12)},
    "cars196-csv": {"train": (4, 12), "test": (4, 12)},
    "sop": {"train": (4, 12), "test": (4, 12)},
    "inshop-official": {"train": (4, 12), "query": (3, 6), "gallery": (3, 12)},
    "inshop-flat": {"train": (4, 12), "query": (3, 6), "gallery": (3, 12)},
}


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    return {name: make(str(tmp_path_factory.mktemp(name))) for name, (_, make) in FAKES.items()}


def to_tensor(img):
    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255


def load(dataset, root, transform=to_tensor) -> DataSplits:
    return load_dataset(dataset, root, transform, transform)


def error_of(dataset, root) -> str:
    with pytest.raises(DataError) as err:
        load(dataset, root)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_the_fakes_hold_grey_and_cmyk_jpegs_in_every_split(fakes):
    """Else the 3-channel checks below would prove nothing."""
    for name, root in fakes.items():
        modes = set()
        for folder, _, files in os.walk(root):
            for f in files:
                if f.lower().endswith(".jpg"):
                    with Image.open(os.path.join(folder, f)) as img:
                        modes.add((img.format, img.mode))
        assert modes == {("JPEG", "L"), ("JPEG", "CMYK"), ("JPEG", "RGB")}, name


# --------------------------------------------------------------------------- loading
@pytest.mark.parametrize("fake", sorted(FAKES))
def test_each_layout_loads_with_its_class_splits(fakes, fake):
    splits = load(FAKES[fake][0], fakes[fake])
    views = {"train": splits.train, "test": splits.query}
    if not splits.query_is_reference:
        views = {"train": splits.train, "query": splits.query, "gallery": splits.reference}
    counts = {
        split: (len(set(np.asarray(view.labels).tolist())), len(view))
        for split, view in views.items()
    }
    assert counts == EXPECTED_SPLITS[fake]
    assert len(splits.train_eval) == len(splits.train)
    assert set(np.asarray(splits.train_labels).tolist()) == set(
        np.asarray(splits.train.labels).tolist()
    )


@pytest.mark.parametrize("fake", sorted(FAKES))
def test_every_item_is_a_three_channel_tensor(fakes, fake):
    splits = load(FAKES[fake][0], fakes[fake])
    for view in (splits.train, splits.train_eval, splits.query, splits.reference):
        for i in range(len(view)):
            image, label = view[i]
            assert isinstance(image, torch.Tensor) and image.shape == (3, 12, 12), (fake, i)
            assert isinstance(label, int)


def test_class_ids_are_the_official_ones(fakes):
    expected = {
        "cub": CUB_CLASSES,
        "cars196-official": CARS_CLASSES,
        "cars196-csv": CARS_CLASSES,
        "sop": SOP_CLASSES,
    }
    for fake, classes in expected.items():
        splits = load(FAKES[fake][0], fakes[fake])
        assert sorted(set(np.asarray(splits.train.labels).tolist())) == classes["train"]
        assert sorted(set(np.asarray(splits.query.labels).tolist())) == classes["test"]


def test_cars_csv_images_are_found_in_their_class_folder(fakes):
    """PML's layout: class 3's name has a '/', its folder a '-'."""
    splits = load("cars196", fakes["cars196-csv"])
    paths = [p for p, label in zip(splits.train.paths, splits.train.labels) if label == 3]
    assert len(paths) == PER_CLASS
    assert all(os.sep + "Ram C-V Cargo Van Minivan 2012" + os.sep in p for p in paths)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "RGBA", "RGB"])
def test_rgb_first_gives_three_channels_whatever_the_mode(mode):
    image = Image.new(mode, (5, 4))
    seen = []
    out = RGBFirst(lambda img: seen.append(img.mode) or to_tensor(img))(image)
    assert seen == ["RGB"] and out.shape == (3, 4, 5)
    assert RGBFirst()(image).mode == "RGB"


# --------------------------------------------------------------------------- In-shop
@pytest.mark.parametrize("fake", ["inshop-official", "inshop-flat"])
def test_inshop_searches_the_query_images_among_the_gallery(fakes, fake):
    splits = load("inshop", fakes[fake])
    assert not splits.query_is_reference
    assert all("/img/" in p for p in splits.query.paths + splits.reference.paths)
    if fake == "inshop-official":
        assert all(os.sep + "Img" + os.sep + "img" in p for p in splits.query.paths)
    test_items = [item for item, _ in INSHOP_ITEMS["test"]]
    assert sorted(set(splits.query.labels.tolist())) == test_items
    assert sorted(set(splits.reference.labels.tolist())) == test_items
    assert not set(splits.query.paths) & set(splits.reference.paths)
    assert sorted(set(splits.train_labels.tolist())) == [1, 2, 3, 4]


def test_inshop_items_in_train_and_test_are_an_error(tmp_path):
    items = {"train": INSHOP_ITEMS["train"], "test": [(4, "MEN/Tees_Tanks"), (5, "WOMEN/Dresses")]}
    root = make_inshop(str(tmp_path), items=items)
    assert "id_00000004" in error_of("inshop", root)


# --------------------------------------------------------------------------- Recall@K
def test_recall_ks_per_data_set(fakes, tmp_path):
    expected = {
        "cub": (1, 2, 4, 8, 16, 32),
        "cars196-official": (1, 2, 4, 8, 16, 32),
        "cars196-csv": (1, 2, 4, 8, 16, 32),
        "sop": (1, 10, 100, 1000),
        "inshop-official": (1, 10, 20, 30, 40, 50),
        "inshop-flat": (1, 10, 20, 30, 40, 50),
    }
    for fake, ks in expected.items():
        assert tuple(load(FAKES[fake][0], fakes[fake]).recall_ks) == ks, fake
    folder = tmp_path / "folder"
    for c in range(4):
        write_jpeg(str(folder / f"class{c}" / "a.jpg"), "RGB", c)
    assert tuple(load("folder", str(folder)).recall_ks) == (1, 2, 4, 8)


def test_recall_ks_above_the_neighbours_are_left_out_or_refused(fakes):
    cub = load("cub", fakes["cub"])  # 12 test images: 11 neighbours per query
    assert recall_ks.choose(cub, None, "cub")[0] == [1, 2, 4, 8]
    assert "16, 32 left out" in recall_ks.choose(cub, None, "cub")[1]
    assert recall_ks.choose(cub, [1, 11], "cub") == ([1, 11], None)
    with pytest.raises(SystemExit, match=r"^error: --recall-ks 12: .* 11 neighbours"):
        recall_ks.choose(cub, [1, 12], "cub")
    inshop = load("inshop", fakes["inshop-flat"])  # a gallery of 12: 12 neighbours
    assert recall_ks.choose(inshop, None, "inshop")[0] == [1, 10]
    assert recall_ks.choose(inshop, [1, 12], "inshop") == ([1, 12], None)


@pytest.mark.parametrize(
    "ks, message",
    [
        (["0", "1"], "takes positive integers, got 0"),
        (["1", "-4"], "takes positive integers, got -4"),
        (["1", "4", "4"], "names 4 twice"),
        (["2", "4"], "must include 1"),
    ],
)
def test_recall_ks_flag_is_validated(ks, message):
    with pytest.raises(SystemExit, match="^error: --recall-ks " + re.escape(message)):
        cli.resolve_config(cli.build_parser().parse_args(["--recall-ks", *ks]))


def test_recall_ks_flag_is_recorded_sorted():
    args = cli.build_parser().parse_args(["--recall-ks", "4", "1", "2"])
    assert cli.resolve_config(args)["recall_ks"] == [1, 2, 4]


# --------------------------------------------------------------------------- errors
def rewrite(path, edit):
    with open(path) as f:
        lines = f.read().splitlines()
    write_lines(path, edit(lines))


def test_inshop_count_line_that_disagrees_is_an_error(tmp_path):
    root = make_inshop(str(tmp_path))
    path = os.path.join(root, "Eval", "list_eval_partition.txt")
    rewrite(path, lambda lines: [str(int(lines[0]) + 1)] + lines[1:])
    message = error_of("inshop", root)
    assert "Eval/list_eval_partition.txt says 31 images" in message and "lists 30" in message


def test_inshop_lost_row_is_an_error(tmp_path):
    root = make_inshop(str(tmp_path), official=False)
    rewrite(os.path.join(root, "list_eval_partition.txt"), lambda lines: lines[:-1])
    assert "list_eval_partition.txt says 30 images" in error_of("inshop", root)


def test_inshop_missing_count_or_header_line_is_an_error(tmp_path):
    root = make_inshop(str(tmp_path), official=False)
    path = os.path.join(root, "list_eval_partition.txt")
    with open(path) as f:
        lines = f.read().splitlines()
    write_lines(path, lines[1:])
    assert "starts with the header line, not the number of images" in error_of("inshop", root)
    write_lines(path, [lines[0]] + lines[2:])
    message = error_of("inshop", root)
    assert "line 2 is 'img/" in message and "not the header" in message
    write_lines(path, lines[2:])
    assert "starts with 'img/" in error_of("inshop", root)


def test_sop_without_header_line_is_an_error(tmp_path):
    root = make_sop(str(tmp_path))
    rewrite(os.path.join(root, "Stanford_Online_Products", "Ebay_test.txt"), lambda x: x[1:])
    message = error_of("sop", root)
    assert message.startswith("Stanford_Online_Products/Ebay_test.txt starts with '1 11319 ")
    assert "header line 'image_id class_id super_class_id path'" in message


def test_sop_empty_split_is_an_error(tmp_path):
    root = make_sop(str(tmp_path), classes={"train": [1, 2], "test": []})
    message = error_of("sop", root)
    assert "Ebay_test.txt lists no image" in message and "classes 11319-22634" in message


def test_sop_classes_shared_by_train_and_test_are_an_error(tmp_path):
    root = make_sop(str(tmp_path), classes={"train": [1, 2], "test": [2, 11320]})
    assert "share class ids [2]" in error_of("sop", root)


def test_cars_names_csv_with_a_header_line_is_an_error(tmp_path):
    root = make_cars_csv(str(tmp_path), names_header="class_name")
    message = error_of("cars196", root)
    assert "names.csv starts with a header line ('class_name')" in message


def test_cars_anno_csv_with_a_header_line_is_an_error(tmp_path):
    root = make_cars_csv(str(tmp_path))
    path = os.path.join(root, "anno_test.csv")
    rewrite(path, lambda lines: ["Image,x1,y1,x2,y2,Class"] + lines)
    message = error_of("cars196", root)
    assert message.startswith("anno_test.csv line 1 ('Image,x1,y1,x2,y2,Class') is not")
    assert "no header line" in message


def test_cars_mat_without_annotations_is_an_error(tmp_path):
    scipy.io.savemat(str(tmp_path / "cars_annos.mat"), {"class_names": np.array(["a"], object)})
    assert "no struct array 'annotations'" in error_of("cars196", str(tmp_path))
    (tmp_path / "cars_annos.mat").write_bytes(b"not a mat file")
    assert "cars_annos.mat is not a MATLAB file" in error_of("cars196", str(tmp_path))


def test_cub_ids_that_disagree_are_an_error(tmp_path):
    root = make_cub(str(tmp_path))
    path = os.path.join(root, "CUB_200_2011", "image_class_labels.txt")
    rewrite(path, lambda lines: [lines[1], lines[0]] + lines[2:])
    message = error_of("cub", root)
    assert "line 1 of CUB_200_2011/images.txt is image 1" in message and "image 2" in message


def test_cub_zero_based_class_ids_are_an_error(tmp_path):
    root = make_cub(str(tmp_path))
    path = os.path.join(root, "CUB_200_2011", "image_class_labels.txt")
    rewrite(path, lambda lines: [f"{i} {int(c) - 1}" for i, c in (x.split() for x in lines)])
    assert "class id 0 is outside 1-200 (ids are 1-based)" in error_of("cub", root)


def test_cub_header_line_is_an_error(tmp_path):
    root = make_cub(str(tmp_path))
    rewrite(os.path.join(root, "CUB_200_2011", "images.txt"), lambda x: ["image_id path"] + x)
    message = error_of("cub", root)
    assert message.startswith("CUB_200_2011/images.txt line 1 ('image_id path') is not")
    assert "(the file has no header line)" in message


def test_blank_line_is_an_error(tmp_path):
    root = make_cub(str(tmp_path))
    rewrite(os.path.join(root, "CUB_200_2011", "images.txt"), lambda x: x[:3] + [""] + x[3:])
    assert error_of("cub", root) == "CUB_200_2011/images.txt line 4 is blank; remove it"


@pytest.mark.parametrize(
    "fake, classes, expected",
    [
        ("cub", {"train": [1, 2], "test": []}, "classes 101-200, so the test split is empty"),
        ("cub", {"train": [], "test": [150]}, "classes 1-100, so the train split is empty"),
        ("cars196-official", {"train": [5], "test": []}, "classes 99-196, so the test split"),
        ("cars196-csv", {"train": [5], "test": []}, "classes 99-196, so the test split"),
    ],
)
def test_empty_split_names_its_class_range(tmp_path, fake, classes, expected):
    make = {"cub": make_cub, "cars196-official": make_cars_official, "cars196-csv": make_cars_csv}
    root = make[fake](str(tmp_path), classes=classes)
    assert expected in error_of(FAKES[fake][0], root)


@pytest.mark.parametrize("fake", sorted(FAKES))
def test_missing_images_are_one_error_naming_the_first(tmp_path, fake):
    dataset, make = FAKES[fake]
    root = make(str(tmp_path))
    listed = sorted(
        os.path.join(folder, f)
        for folder, _, files in os.walk(root)
        for f in files
        if f.lower().endswith(".jpg")
    )
    for path in listed[:5]:
        os.remove(path)
    message = error_of(dataset, root)
    assert message.startswith(f"5 of the {len(listed)} images that ")
    assert "are missing under --data-root" in message and "and 2 more; expected" in message
    named = message.split(": ", 1)[1].split(" and 2 more")[0].split(", ")
    assert len(named) == 3 and all(os.path.join(root, n) in listed[:5] for n in named)


def test_missing_images_stop_compare_before_any_model_is_built(tmp_path, monkeypatch):
    root = make_sop(str(tmp_path))
    os.remove(os.path.join(root, "Stanford_Online_Products", "cabinet_final", "111085122001_0.JPG"))
    monkeypatch.setattr(
        benchmarks.training.run, "build_models", lambda *a: pytest.fail("model built")
    )
    with pytest.raises(
        SystemExit, match=r"^error: 1 of the 24 images .*/cabinet_final/111085122001_0"
    ):
        compare.main(["--dataset", "sop", "--data-root", root, "--out", str(tmp_path / "o")])


# --------------------------------------------------------------------------- compare.py
#: The Ks compare.py keeps on each miniature copy: the data set's own, up to the
#: neighbours a query has (11 in a test split of 12; 12 in a gallery of 12).
KEPT_KS = {"cub": [1, 2, 4, 8], "cars196": [1, 2, 4, 8], "sop": [1, 10], "inshop": [1, 10]}


@pytest.mark.parametrize("fake", sorted(FAKES))
def test_compare_runs_end_to_end_with_the_paper_preset(
    fakes, fake, googlenet_weights, tmp_path, capsys
):
    """--preset paper (googlenet with ImageNet-shaped weights, SGD, 512-d) on each
    miniature official layout, grey and CMYK images included."""
    dataset = FAKES[fake][0]
    out = tmp_path / "out"
    compare.main(
        ["--preset", "paper", "--dataset", dataset, "--data-root", fakes[fake],
         "--pretrained-weights", googlenet_weights, "--image-size", "16", "--epochs", "1",
         "--iters-per-epoch", "1", "--batch-size", "16", "--embedding-size", "8",
         "--losses", "triplet", "htl", "--device", "cpu", "--out", str(out)]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["recall_ks"] == KEPT_KS[dataset]
    assert {r["loss"] for r in results["runs"]} == {"triplet", "htl"}
    for run in results["runs"]:
        for k in KEPT_KS[dataset]:
            assert 0.0 <= run["final"][f"recall_at_{k}"] <= 1.0
    assert "left out, a query has only" in capsys.readouterr().out


def test_compare_takes_recall_ks_from_the_flag(fakes, tmp_path):
    out = tmp_path / "out"
    compare.main(
        ["--dataset", "cub", "--data-root", fakes["cub"], "--backbone", "resnet18",
         "--image-size", "16", "--epochs", "1", "--iters-per-epoch", "1", "--batch-size", "16",
         "--embedding-size", "8", "--losses", "triplet", "--device", "cpu", "--out", str(out),
         "--recall-ks", "1", "3"]
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["recall_ks"] == [1, 3]
    assert "recall_at_3" in results["runs"][0]["final"]
    assert "recall_at_2" not in results["runs"][0]["final"]
