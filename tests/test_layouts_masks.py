"""Segmentation layouts: a slice of the real membrane data written in every layout the mask reader
claims reads back as the same images and class masks, exactly; stray values and unknown colours fail
in one line."""

import numpy as np
import pytest
from PIL import Image

from tasks import segmentation
from tasks.core.errors import UserError
from tasks.data import masks
from tests import helpers

IGNORE = masks.IGNORE
NUM_SLICES = 5
CROP = (96, 128)  # (H, W): not square, so a transposed mask cannot pass


@pytest.fixture(scope="module")
def membrane(shared_data):
    """[(image (H, W) uint8, class ids (H, W) uint8)] of the first slices: 0 membrane, 1 cell."""
    root = shared_data / "membrane" / "train"
    slices = []
    for index in range(NUM_SLICES):
        image = np.asarray(Image.open(root / "image" / f"{index}.png"))[: CROP[0], : CROP[1]]
        label = np.asarray(Image.open(root / "label" / f"{index}.png"))[: CROP[0], : CROP[1]]
        assert set(np.unique(label)) <= {0, 255}
        slices.append((image, (label == 255).astype(np.uint8)))
    return slices


def save(array, path, palette=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(array)
    if palette is not None:
        picture = picture.convert("P")
        picture.putpalette(palette)
    picture.save(path)


def split_of(index):
    return "train" if index < 3 else ("val" if index == 3 else "test")


# Each writer puts (image, ids) pairs into one layout under `root`; the reader must undo it exactly.


def write_folders(root, slices):
    for index, (image, ids) in enumerate(slices):
        save(image, root / "images" / f"{index}.png")
        save(ids * 255, root / "masks" / f"{index}.png")  # binary {0, 255}


def write_split_folders(root, slices):
    for index, (image, ids) in enumerate(slices):
        save(image, root / split_of(index) / "image" / f"{index}.png")
        save(ids * 255, root / split_of(index) / "label" / f"{index}.png")


def write_segnet(root, slices):
    for index, (image, ids) in enumerate(slices):
        save(image, root / split_of(index) / f"{index}.png")
        save(ids, root / f"{split_of(index)}annot" / f"{index}.png")  # index masks {0, 1}


def write_cityscapes(root, slices):
    for index, (image, ids) in enumerate(slices):
        split = "train" if index < 3 else "val"
        stem = f"frankfurt_000000_{index:06d}"
        save(image, root / "leftImg8bit" / split / "frankfurt" / f"{stem}_leftImg8bit.png")
        folder = root / "gtFine" / split / "frankfurt"
        save(np.where(ids == 1, 8, 7).astype(np.uint8), folder / f"{stem}_gtFine_labelIds.png")  # road, sidewalk
        save(np.zeros_like(ids), folder / f"{stem}_gtFine_instanceIds.png")  # not a mask: left alone
        save(np.stack([ids * 200] * 3, -1), folder / f"{stem}_gtFine_color.png")


def write_ade20k(root, slices):
    for index, (image, ids) in enumerate(slices):
        split = "training" if index < 3 else "validation"
        save(image, root / "images" / split / f"ADE_{split}_{index:08d}.png")
        save(ids + 1, root / "annotations" / split / f"ADE_{split}_{index:08d}.png")  # 0 is void


def write_palette(root, slices):
    palette = [0, 0, 0, 250, 170, 30] + [0] * (3 * 254)  # index 1 drawn orange: read as 1, not colour
    for index, (image, ids) in enumerate(slices):
        save(image, root / "images" / f"{index}.png")
        save(ids, root / "masks" / f"{index}.png", palette=palette)


COLOURS = {0: (128, 64, 128), 1: (70, 70, 70)}


def colour_coded(ids):
    rgb = np.zeros(ids.shape + (3,), np.uint8)
    for value, colour in COLOURS.items():
        rgb[ids == value] = colour
    return rgb


def write_colour_table(root, void=False):
    root.mkdir(parents=True, exist_ok=True)
    rows = ["name,r,g,b", "membrane,128,64,128", "cell,70,70,70"] + (["Void,0,0,0"] if void else [])
    (root / "class_dict.csv").write_text("\n".join(rows) + "\n")


def write_rgb(root, slices):
    write_colour_table(root)
    for index, (image, ids) in enumerate(slices):
        save(image, root / "images" / f"{index}.png")
        save(colour_coded(ids), root / "masks" / f"{index}.png")


def write_camvid_colour(root, slices):
    """The CamVid colour tutorials: train/ + train_labels/X_L.png + class_dict.csv."""
    write_colour_table(root, void=True)
    for index, (image, ids) in enumerate(slices):
        save(image, root / split_of(index) / f"0001TP_{index:06d}.png")
        save(colour_coded(ids), root / f"{split_of(index)}_labels" / f"0001TP_{index:06d}_L.png")


LAYOUTS = {
    "folders": (write_folders, "image/mask folders (images/ + masks/)"),
    "split-folders": (write_split_folders, "image/mask folders (image/ + label/) in split folders"),
    "segnet": (write_segnet, "SegNet (train/ + trainannot/)"),
    "cityscapes": (write_cityscapes, "Cityscapes"),
    "ade20k": (write_ade20k, "ADE20K"),
    "palette": (write_palette, "image/mask folders (images/ + masks/)"),
    "rgb-class-dict": (write_rgb, "image/mask folders (images/ + masks/)"),
    "camvid-colour": (write_camvid_colour, "SegNet (train/ + train_labels/)"),
}


def pairs(found):
    """Every (image, mask) the reader returned, in a fixed order (by image content)."""
    result = [(image, mask) for split in found.splits.values() for image, mask in zip(split.images, split.masks)]
    return sorted(result, key=lambda pair: pair[0].tobytes())


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_reads_back_the_same_masks(layout, membrane, tmp_path):
    writer, name = LAYOUTS[layout]
    writer(tmp_path / "data", membrane)
    found = masks.read(str(tmp_path / "data"), verbose=False)
    assert found.layout.startswith(name), found.layout
    got, expected = pairs(found), sorted(membrane, key=lambda pair: pair[0].tobytes())
    assert len(got) == len(expected) == NUM_SLICES
    for (image, mask), (want_image, want_mask) in zip(got, expected):
        np.testing.assert_array_equal(image, want_image)
        np.testing.assert_array_equal(mask, want_mask)


def test_layouts_name_their_classes(membrane, tmp_path):
    write_cityscapes(tmp_path / "city", membrane)
    write_ade20k(tmp_path / "ade", membrane)
    write_rgb(tmp_path / "rgb", membrane)
    city = masks.read(str(tmp_path / "city"), verbose=False)
    assert len(city.class_names) == 19 and city.class_names[:2] == ["road", "sidewalk"]
    assert list(city.splits) == ["train", "test"]  # Cityscapes val is the test split
    assert 0 in city.void and 8 not in city.void
    assert len(masks.read(str(tmp_path / "ade"), verbose=False).class_names) == 150
    assert masks.read(str(tmp_path / "rgb"), verbose=False).class_names == ["membrane", "cell"]


def test_camvid_index_masks_get_camvid_names_and_void(membrane, tmp_path):
    root = tmp_path / "CamVid"
    for index, (image, ids) in enumerate(membrane):
        mask = np.where(ids == 1, 3, 1).astype(np.uint8)  # building, road
        mask[:4] = masks.CAMVID_VOID
        save(image, root / split_of(index) / f"{index}.png")
        save(mask, root / f"{split_of(index)}annot" / f"{index}.png")
    found = masks.read(str(root), verbose=False)
    assert found.class_names == masks.CAMVID_CLASSES
    assert set(np.unique(found.splits["train"].masks[0])) == {1, 3, IGNORE}


def test_summary_names_layout_count_and_class_map(membrane, tmp_path, capsys):
    write_folders(tmp_path / "data", membrane)
    masks.read(str(tmp_path / "data"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "data: image/mask folders (images/ + masks/), 5 images (train 5), 2 classes"
    assert lines[1] == "class map (inferred from the mask values): 0 background, 255 foreground; void: none"


# === Stray values (a patch of 7 in {0, 255} masks) ===


def write_stray_patch(root, membrane):
    write_folders(root, membrane)
    label = np.asarray(Image.open(root / "masks" / "2.png")).copy()
    label[10:15, 20:25] = 7  # one 5x5 patch
    save(label, root / "masks" / "2.png")


def test_stray_value_is_an_error_not_a_new_class_map(membrane, tmp_path):
    write_stray_patch(tmp_path / "data", membrane)
    with pytest.raises(UserError) as error:
        masks.read(str(tmp_path / "data"), verbose=False)
    message = str(error.value)
    assert "value 7 in 25 pixels of 1 mask(s), first 'train/2'" in message
    assert "0 background, 255 foreground" in message and "--stray-values void" in message
    assert "\n" not in message


def test_stray_values_void_keeps_the_classes_and_counts(membrane, tmp_path):
    write_stray_patch(tmp_path / "data", membrane)
    found = masks.read(str(tmp_path / "data"), stray="void", verbose=False)
    assert found.class_map == {0: "background", 255: "foreground"}
    assert found.warnings == ["25 mask pixels hold values outside the class map (7); counted as void "
                              "(--stray-values void)"]
    mask = found.splits["train"].masks[2]
    assert (mask[10:15, 20:25] == IGNORE).all()
    expected = membrane[2][1].copy()
    expected[10:15, 20:25] = IGNORE
    np.testing.assert_array_equal(mask, expected)


def test_stray_value_through_the_cli_is_one_line_and_writes_nothing(membrane, tmp_path, capsys):
    write_stray_patch(tmp_path / "data", membrane)
    result = helpers.run_in_process(segmentation, capsys, tmp_path, "train", "--data", tmp_path / "data",
                                    "--epochs", "1")
    helpers.assert_one_line_error(result, "value 7", "class map", "--stray-values void")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


def test_unknown_colour_is_one_line(membrane, tmp_path):
    write_rgb(tmp_path / "data", membrane)
    mask = colour_coded(membrane[1][1])
    mask[0, :3] = (255, 0, 255)
    save(mask, tmp_path / "data" / "masks" / "1.png")
    with pytest.raises(UserError) as error:
        masks.read(str(tmp_path / "data"), verbose=False)
    assert "colour (255,0,255) in 3 pixels" in str(error.value) and "class_dict.csv" in str(error.value)
    assert "\n" not in str(error.value)


def test_colour_masks_without_a_table_say_how_to_add_one(membrane, tmp_path):
    write_rgb(tmp_path / "data", membrane)
    (tmp_path / "data" / "class_dict.csv").unlink()
    with pytest.raises(UserError, match="class_dict.csv"):
        masks.read(str(tmp_path / "data"), verbose=False)


def test_mostly_void_masks_warn(membrane, tmp_path):
    root = tmp_path / "data"
    for index, (image, ids) in enumerate(membrane[:2]):
        mask = np.full(ids.shape, IGNORE, np.uint8)
        mask[:20] = ids[:20]  # index masks {0, 1}, the rest void
        save(image, root / "images" / f"{index}.png")
        save(mask, root / "masks" / f"{index}.png")
    found = masks.read(str(root), verbose=False)
    assert found.class_names == ["0", "1"]
    assert any("% of the mask pixels are void" in warning for warning in found.warnings), found.warnings


def test_a_split_missing_a_class_warns():
    split = masks.Split([None], [np.zeros((4, 4), np.uint8)], ["a"])
    warnings = segmentation.missing_classes({"test": split}, ["background", "cell"], verbose=False)
    assert warnings == ["the test split (1 images) has no pixel of class 'cell'; its IoU there is undefined"]
