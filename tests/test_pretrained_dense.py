"""Detection and segmentation from an ImageNet backbone (`--backbone mobilenet|mobilenet_v2`): the
file's weights in the backbone, a frozen warm-up that leaves it as it was, the export reloaded in a
fresh process, one error line for a bad --backbone or an offline --weights imagenet, and on real
data (BCCD, membrane) a short fine-tune far above the same network trained from scratch."""

import dataclasses

import numpy as np
import pytest

import applications
from applications import backbones
from tasks import detection
from tasks import segmentation
from tasks.core import config as config_lib
from tasks.core import export as export_lib
from tasks.core import finetune
from tasks.core import training
from tests.helpers import assert_one_line_error
from tests.helpers import run_in_process
from tests.test_detection_data import SCENE
from tests.test_detection_data import write_voc
from tests.test_pretrained import PRETRAINED
from tests.test_pretrained import V1_FILE
from tests.test_pretrained import V2_FILE
from tests.test_segmentation import write_pairs

SIZE = 64  # the smallest side every head here reaches stride 32 at (FCN) with a whole grid

# (task module, --model): both detection heads, both segmentation decoders.
NETWORKS = [(detection, "yolo_v2"), (detection, "faster_rcnn"), (segmentation, "fcn8s"), (segmentation, "unet")]
IDS = [model for _, model in NETWORKS]
# Faster R-CNN's build (4 s on two cores) and the YOLO frozen-epoch pair run in the full suite; the
# fast lane keeps the other heads and the U-Net pair.
SLOW = pytest.mark.slow
NETWORK_PARAMS = [pytest.param(*network, id=name, marks=[SLOW] if name == "faster_rcnn" else [])
                  for network, name in zip(NETWORKS, IDS)]


def small_info(module):
    """The facts `build_model` needs, as `load_data` would give them for 64 px images (grey for
    segmentation, as membrane's), with every detection kept for the export's comparison."""
    if module is detection:
        return {
            "image_size": SIZE, "num_classes": 3, "class_names": ["a", "b", "c"], "num_train": 8,
            "anchors": [[0.1, 0.1], [0.3, 0.3]], "anchor_sizes": [0.1, 0.2, 0.4], "anchor_ratios": [0.5, 1.0, 2.0],
            "mean": [120.0] * 3, "variance": [3000.0] * 3,
            "detection": {"model": "yolo_v2", "max_detections": 20, "nms_iou": 0.5, "score_threshold": 0.0},
        }
    return {"crop_size": SIZE, "image_size": 0, "channels": 1, "num_classes": 2, "class_names": ["membrane", "cell"],
            "num_train": 8, "mean": [120.0], "variance": [3000.0], "class_weights": None}


def build(module, model, weights, backbone="mobilenet_v2", **overrides):
    config = config_lib.build(module.Config, model=model, backbone=backbone, weights=weights, verbose=0,
                              **overrides)
    training.setup(config)
    return module.build_model(config, small_info(module)), config


def leaf_layers(model):
    return list(finetune._leaf_layers(model))


# === The file's weights ===


@pytest.mark.parametrize("module, model", NETWORK_PARAMS)
def test_backbone_holds_the_weights_file(module, model):
    network, _ = build(module, model, str(PRETRAINED / V2_FILE))
    backbone = finetune.find_backbone(network)
    arrays = finetune.source_arrays(PRETRAINED / V2_FILE)
    layers = leaf_layers(backbone)
    assert len(layers) > 20  # every conv and batch norm up to the coarsest stride the head uses
    for layer in layers:
        for mine, theirs in zip(layer.get_weights(), arrays[layer.name][0], strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=layer.name)
    # The control: the same network with --weights none holds other arrays.
    scratch = finetune.find_backbone(build(module, model, "none")[0])
    assert not np.array_equal(scratch.get_layer("Conv1").get_weights()[0], arrays["Conv1"][0][0])


# === The frozen warm-up ===


def random_batch(module, rng):
    """8 raw images and their targets at `SIZE`: one box per image, or a half-and-half mask."""
    if module is detection:
        images = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
        targets = np.full((8, detection.MAX_BOXES, 5), -1.0, "float32")
        targets[:, 0] = [0.2, 0.3, 0.6, 0.7, 1.0]  # y1 x1 y2 x2 class
        return images, targets
    images = rng.uniform(0, 255, (8, SIZE, SIZE, 1)).astype("float32")
    masks = np.zeros((8, SIZE, SIZE), "int32")
    masks[:, :, SIZE // 2:] = 1
    return images, masks


@pytest.mark.parametrize("freeze", [1, 0], ids=["frozen", "guard-unfrozen"])
@pytest.mark.parametrize("module, model", [pytest.param(detection, "yolo_v2", id="yolo_v2", marks=SLOW),
                                           pytest.param(segmentation, "unet", id="unet")])
def test_a_frozen_epoch_leaves_the_backbone(module, model, freeze):
    """One epoch with --freeze-backbone-epochs 1: the backbone (its batch-norm statistics too) as
    loaded, the head trained. The guard: with 0 the same epoch changes the backbone. (MobileNet v1:
    a quarter of V2's layers to trace, the same callback.)"""
    network, config = build(module, model, str(PRETRAINED / V1_FILE), backbone="mobilenet",
                            freeze_backbone_epochs=freeze, warmup_epochs=0.0, schedule="constant")
    backbone = finetune.find_backbone(network)
    head = network.get_layer(f"{model}").get_layer("predictions" if module is detection else "classifier")
    before, head_before = [w.copy() for w in backbone.get_weights()], head.get_weights()[0].copy()
    images, targets = random_batch(module, np.random.default_rng(0))
    network.fit(images, targets, batch_size=8, epochs=1, verbose=0, callbacks=finetune.callbacks(network, config))
    unchanged = all(np.array_equal(old, new) for old, new in zip(before, backbone.get_weights()))
    assert unchanged == bool(freeze)
    assert not np.array_equal(head_before, head.get_weights()[0])


# === Export ===


@pytest.mark.subprocess
@pytest.mark.parametrize("module, model", [(detection, "yolo_v2"), (segmentation, "fcn8s")], ids=["yolo_v2", "fcn8s"])
def test_export_reloads_in_a_fresh_process(module, model, tmp_path):
    """The SavedModel (raw image bytes in, the backbone's preprocessing inside) answers like the
    Keras model when reloaded by plain TensorFlow; `export.write` refuses to publish otherwise."""
    network, _ = build(module, model, str(PRETRAINED / V2_FILE))
    info = small_info(module)
    path = export_lib.write(module.__name__.split(".")[-1], network, module.serving(network, info), {},
                            export_dir=str(tmp_path))
    check = (path / "assets" / "check.json").read_text()
    assert '"outputs_compared"' in check and (path / "saved_model.pb").is_file()
    if module is detection:  # the comparison had boxes to compare: every detection kept
        found = module.detector(network, info, detection._Options(**info["detection"]))(
            np.full((1, 50, 70, 3), 128, np.uint8))
        assert int(found["num_detections"][0]) > 0


# === Bad input ===


def tiny_data(module, root):
    if module is detection:
        return write_voc(root, SCENE), ["--image-size", str(SIZE)]
    return write_pairs(root), ["--crop-size", "32"]


@pytest.mark.parametrize("module", [detection, segmentation], ids=["detection", "segmentation"])
def test_offline_imagenet_is_one_line_naming_the_file(module, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # nothing cached
    monkeypatch.setattr(finetune, "DOWNLOAD_HOST", ("weights.invalid", 443))  # never resolves
    data, flags = tiny_data(module, tmp_path / "data")
    result = run_in_process(module, capsys, tmp_path, "train", "--data", data, *flags, "--epochs", "1",
                            "--backbone", "mobilenet_v2", "--weights", "imagenet")
    assert_one_line_error(result, "--weights imagenet", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
                          "--weights PATH")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


@pytest.mark.parametrize("module", [detection, segmentation], ids=["detection", "segmentation"])
def test_unknown_backbone_is_one_line_naming_both_kinds(module, tmp_path, capsys):
    data, flags = tiny_data(module, tmp_path / "data")
    result = run_in_process(module, capsys, tmp_path, "train", "--data", data, *flags, "--backbone", "mobilenet_v3")
    assert_one_line_error(result, "--backbone mobilenet_v3", "resnet18", "mobilenet_v2")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module", [detection, segmentation], ids=["detection", "segmentation"])
def test_weights_file_beside_a_registry_backbone_is_one_line(module, tmp_path, capsys):
    data, flags = tiny_data(module, tmp_path / "data")
    result = run_in_process(module, capsys, tmp_path, "train", "--data", data, *flags, "--backbone", "resnet18",
                            "--weights", PRETRAINED / V2_FILE)
    assert_one_line_error(result, "--backbone resnet18", "mobilenet, mobilenet_v2", "--init-from")


@pytest.mark.parametrize("module", [detection, segmentation], ids=["detection", "segmentation"])
def test_backbone_help_lists_registry_and_pretrained_names(module):
    (field,) = [field for field in dataclasses.fields(module.Config) if field.name == "backbone"]
    for name in applications.names("classifier") + backbones.names():
        assert name in field.metadata["help"], name


# === Real data: a short fine-tune against the same budget from scratch ===


def fine_tune(module, shared_data, weights, **overrides):
    """`module`'s metrics on its test split for the network `overrides` names, untrained and after
    `epochs` of `finetune.callbacks` training (weights "none": the same network from scratch)."""
    config = config_lib.build(module.Config, weights=weights, verbose=0, **overrides)
    config = dataclasses.replace(config, data=str(shared_data / config.data))
    training.setup(config)
    data = module.load_data(config)
    model = module.build_model(config, data.info)
    untrained = module.evaluate(model, data, config)
    model.fit(data.train, epochs=config.epochs, callbacks=finetune.callbacks(model, config), verbose=0)
    return module.evaluate(model, data, config), untrained


BCCD = dict(data="bccd", model="yolo_v2", backbone="mobilenet_v2", image_size=160, epochs=3, flip=True,
            vertical_flip=True, scale_jitter=0.2)
BCCD_BAR, BCCD_MARGIN = 0.30, 0.25  # mAP@0.5: pretrained >= bar > scratch, untrained; pretrained >= scratch + margin


@pytest.mark.slow  # two BCCD trainings (ImageNet and scratch MobileNetV2): 120-170 s on the loaded 2-core host
def test_imagenet_backbone_beats_scratch_on_bccd(shared_data):
    """YOLOv2 on MobileNetV2 (alpha 0.35) at 160 px, 3 epochs (the first with the backbone frozen),
    BCCD's own splits. Measured with seeds 0 / 1 / 2: mAP@0.5 0.403 / 0.385 / 0.383 from the
    ImageNet file against 0.025 / 0.028 / 0.025 for the same network from scratch; untrained 0.000;
    training 48-68 s (ImageNet) and 72-101 s (scratch) on the loaded 2-core host."""
    pretrained, untrained = fine_tune(detection, shared_data, str(PRETRAINED / V2_FILE), **BCCD)
    scratch, _ = fine_tune(detection, shared_data, "none", **BCCD)
    assert pretrained["map50"] >= BCCD_BAR > max(scratch["map50"], untrained["map50"])
    assert pretrained["map50"] >= scratch["map50"] + BCCD_MARGIN


MEMBRANE = dict(data="membrane", model="unet", backbone="mobilenet_v2", class_map="0:membrane,255:cell",
                test_names="25-29", validation_fraction=0.0, crop_size=128, crops_per_image=8, flip=True,
                rotate90=True, loss="ce_dice", epochs=3, width=16, depth=4)
MEMBRANE_BAR, MEMBRANE_MARGIN = 0.92, 0.15  # Dice: pretrained >= bar > scratch, untrained; mIoU: + margin


@pytest.mark.slow  # two membrane trainings (ImageNet and scratch encoders): 100-170 s on the loaded 2-core host
def test_imagenet_encoder_beats_scratch_on_membrane(shared_data):
    """U-Net (width 16, depth 4) on a MobileNetV2 encoder (grey slices repeated to RGB), 3 epochs of
    8 crops per slice (the first with the encoder frozen), slices 25-29 held out. Measured with seeds
    0 / 1 / 2: Dice 0.942 / 0.942 / 0.937, mIoU 0.735 / 0.736 / 0.707 from the ImageNet file; from
    scratch Dice 0.890 / 0.887 / 0.890 (every pixel a cell: 0.890), mIoU 0.401 / 0.480 / 0.401;
    untrained Dice 0.889 / 0.284 / 0.796; training 59-94 s (ImageNet) and 43-74 s (scratch) on the
    loaded 2-core host."""
    pretrained, untrained = fine_tune(segmentation, shared_data, str(PRETRAINED / V2_FILE), **MEMBRANE)
    scratch, _ = fine_tune(segmentation, shared_data, "none", **MEMBRANE)
    assert pretrained["dice"] >= MEMBRANE_BAR > max(scratch["dice"], untrained["dice"])
    assert pretrained["miou"] >= scratch["miou"] + MEMBRANE_MARGIN
