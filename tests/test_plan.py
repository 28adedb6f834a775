"""Dataset fingerprint and planning rules: real statistics from real files, each rule on synthetic fingerprints."""
import dataclasses
import math

import cv2
import numpy as np
import pytest
import yaml

from app.dataset.scanning import scan_dataset
from app.plan import main as plan_main
from app.planning.plan import Resources, describe, make_plan, planned_config
from app.planning.rules import (gravity_aligned, plan_batch, plan_crop, plan_depth, plan_loss, plan_width,
                                unet_receptive_field, working_scale)
from data.fingerprint import Fingerprint, ObjectStats, components

CPU = Resources(gpus=[], memory_bytes=4 * 1024**3)
GPU = Resources(gpus=[{"name": "H100", "compute_capability": (9, 0)}], memory_bytes=40 * 1024**3)


def spread(value, low=None, high=None):
    """A size distribution centred on `value` (low/high: the 10th/90th percentile and beyond)."""
    low, high = low or value, high or value
    return {"min": low, "p5": low, "p10": low, "p50": value, "p90": high, "p95": high, "max": high}


def objects(extent, thickness=None, area=None, count=100, extent_low=None, extent_high=None):
    thickness = thickness or extent
    area = area or extent * thickness
    return ObjectStats(count, spread(area, area / 2), spread(extent, extent_low, extent_high), spread(thickness))


def fingerprint(size=(256, 256), images=100, classes=None, rows=None, cols=None, channels=3, sizes_vary=False):
    """A synthetic fingerprint: `classes` maps names to (pixel share, ObjectStats) (class 0 first)."""
    classes = classes or {"background": (0.85, objects(256)), "cell": (0.15, objects(20, 12, 200))}
    names = list(classes)
    height, width = size
    return Fingerprint(
        class_names=names, images_per_split={"train": images, "val": images // 4},
        height=spread(height, height / 2 if sizes_vary else None, height * 2 if sizes_vary else None),
        width=spread(width, width / 2 if sizes_vary else None, width * 2 if sizes_vary else None),
        channels=channels, file_channels={channels: images}, intensity_mean=[0.3, 0.2, 0.4][:channels],
        intensity_std=[0.2] * channels, class_share={n: classes[n][0] for n in names},
        class_images={n: images for n in names}, class_row=rows or {n: 0.5 for n in names},
        class_col=cols or {n: 0.5 for n in names}, objects={n: classes[n][1] for n in names},
        total_pixels=images * height * width)


def test_components_measure_area_extent_and_thickness():
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 10:30] = 1          # 10 x 20 box: thickness 10
    cv2.line(mask, (5, 30), (55, 30), 1, 1)  # a one-pixel line, 51 long
    found = components(mask)
    order = np.argsort(found["area"])
    assert found["area"][order].tolist() == [51, 200]
    assert found["extent"][order].tolist() == [51, 20]
    assert found["thickness"][order] == pytest.approx([2.0, 10.0], abs=1.0)


def test_fingerprint_of_real_files(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(4):
        mask = np.zeros((48, 64), np.uint8)
        mask[:12] = 1                  # class 1 along the top
        mask[36:, 8:24] = 2            # class 2: a 12 x 16 block at the bottom
        image = np.full((48, 64, 3), 60, np.uint8)
        image[..., 2] = 200
        cv2.imwrite(str(root / "images" / f"{index}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{index}.png"), mask)
    config, _, fp, _ = planned_config(overrides=[{"data": {"path": str(root), "mask": "index", "val_fraction": 0.25}}],
                                   resources=CPU)
    assert fp.images_per_split == {"train": 3, "val": 1} and fp.median_size == (48, 64)
    assert fp.intensity_mean == pytest.approx([200 / 255, 60 / 255, 60 / 255], abs=1e-6)  # RGB order
    assert fp.intensity_std == pytest.approx([0, 0, 0], abs=1e-5)
    assert fp.class_share["class_1"] == pytest.approx(12 * 64 / (48 * 64))
    assert fp.objects["class_2"].area["p50"] == 12 * 16 and fp.objects["class_2"].extent["p50"] == 16
    assert fp.objects["class_2"].count == 3
    assert fp.class_row["class_1"] == pytest.approx(6 / 48) and fp.class_row["class_2"] == pytest.approx(42 / 48)
    assert fp.total_pixels == 4 * 48 * 64
    assert yaml.safe_load(yaml.safe_dump(fp.to_dict()))["objects"]["class_2"]["count"] == 3
    assert config.augment.vflip == 0.0  # class 1 on top, class 2 at the bottom: gravity-aligned


def test_plan_reads_the_data_as_training_does_and_training_reuses_its_scan(tmp_path):
    for split in ("train", "val"):  # a SegNet-style set whose class_dict.csv names the classes and the void row
        for index in range(3):
            labels = np.full((48, 64), 3, np.uint8)
            labels[8:40, 8:40] = index
            (tmp_path / f"{split}annot").mkdir(exist_ok=True)
            (tmp_path / split).mkdir(exist_ok=True)
            cv2.imwrite(str(tmp_path / split / f"{split}{index}.png"), np.full((48, 64, 3), 90, np.uint8))
            cv2.imwrite(str(tmp_path / f"{split}annot" / f"{split}{index}.png"), labels)
    (tmp_path / "class_dict.csv").write_text("name,r,g,b\nSky,128,128,128\nRoad,128,64,128\nCar,64,0,128\n"
                                             "Void,0,0,0\n")
    config, _, fp, scanned = planned_config(overrides=[{"data": {"path": str(tmp_path)}}], resources=CPU)
    assert list(fp.class_share) == ["Sky", "Road", "Car"] and scanned.encoding.void == 3
    assert scan_dataset(config, reuse=scanned) is scanned  # the plan's resize and crop do not change the files read
    other = scan_dataset(config.model_copy(update={"seed": config.seed + 1}), reuse=scanned)  # a seed changes a carved split
    assert other is not scanned and len(other.source.frame) == 6 and other.encoding.void == 3


def test_large_objects_are_downscaled_so_a_crop_holds_one_with_context():
    fp = fingerprint((600, 700), classes={"background": (0.6, objects(700)), "polyp": (0.4, objects(400, 300))})
    plan = make_plan(fp, CPU)
    scale = 256 / (2 * 400)
    assert plan["resize"] == [round(600 * scale), round(700 * scale)]
    assert "typical object extent 400 px" in next(d.reason for d in plan.decisions if d.name == "resize")
    assert plan["crop"] == [192, 224]  # the whole resized image, sides rounded up to the divisor


def test_thin_objects_limit_the_downscaling():
    classes = {"background": (0.6, objects(700)), "organ": (0.3, objects(400, 300)), "vessel": (0.1, objects(300, 6))}
    scale, reason = working_scale(fingerprint((600, 700), classes=classes), 256)
    assert scale == pytest.approx(4 / 6) and "'vessel'" in reason
    classes["vessel"] = (0.1, objects(300, 3))   # too thin for any downscaling
    scale, reason = working_scale(fingerprint((600, 700), classes=classes), 256)
    assert scale == 1.0 and "full resolution" in reason


def test_many_small_images_train_whole_with_a_shallow_net_and_big_batches():
    fp = fingerprint((64, 64), images=2000, classes={"background": (0.7, objects(64)), "spot": (0.3, objects(10))})
    plan = make_plan(fp, CPU)
    assert plan["resize"] is None and plan["crop"] == [64, 64]
    assert plan["depth"] == 3 and 64 / 2**3 == 8
    assert plan["batch_size"] >= 32


def test_few_huge_images_keep_resolution_and_crop_at_the_memory_budget():
    fp = fingerprint((4000, 5000), images=4, classes={"background": (0.9, objects(5000)), "cell": (0.1, objects(30))})
    plan = make_plan(fp, CPU)
    assert plan["resize"] is None
    assert plan["crop"] == [256, 256] and plan["rotate90"] == 0.5  # no up/down: square crops, quarter turns
    upright = make_plan(dataclasses.replace(fp, class_row={"background": 0.2, "cell": 0.8}), CPU)
    assert upright["crop"][0] * upright["crop"][1] <= 256 * 256 * 1.2 and upright["crop"][1] > upright["crop"][0]
    assert upright["rotate90"] == 0.0
    assert plan["batch_size"] == 2  # four training images: at least two steps per epoch, batch of at least 2
    assert make_plan(fp, GPU)["crop"][0] * make_plan(fp, GPU)["crop"][1] > 400 * 400  # GPUs take bigger crops


def test_images_of_varied_size_are_not_resized_to_one_size():
    classes = {"background": (0.6, objects(700)), "polyp": (0.4, objects(400, 300))}
    plan = make_plan(fingerprint((600, 700), classes=classes, sizes_vary=True), CPU)
    assert plan["resize"] is None
    assert "vary" in next(d.reason for d in plan.decisions if d.name == "resize")


def test_depth_covers_the_crop_with_its_receptive_field():
    assert [unet_receptive_field(d) for d in (3, 4, 5)] == [96, 200, 408]
    assert plan_depth([256, 256])[0] == 5
    assert plan_depth([192, 192])[0] == 4
    assert plan_depth([64, 96])[0] == 3
    depth, reason = plan_depth([64, 64], receptive_field=lambda d: 10)  # never covers: deepest with 8 px bottom
    assert depth == 3 and "largest" in reason


def test_depth_and_crop_agree():
    street = {"sky": (0.3, objects(400)), "road": (0.7, objects(30))}
    plan = make_plan(fingerprint((360, 480), classes=street, rows={"sky": 0.2, "road": 0.8}), CPU)
    assert plan["crop"] == [224, 288] and plan["depth"] == 4  # 224 / 2**5 < 8: the deepest allowed
    reason = next(d.reason for d in plan.decisions if d.name == "depth")
    assert "224 px side" in reason and "largest" in reason


def test_crop_keeps_the_aspect_ratio_and_the_divisor():
    crop, _ = plan_crop([360, 480], 256, 32)
    assert crop == [224, 288]
    assert plan_crop([100, 90], 256, 16)[0] == [112, 96]


def test_batch_fits_the_memory():
    tight = Resources(gpus=[], memory_bytes=600 * 1024**2)
    batch, reason = plan_batch([256, 256], 32, 1000, tight)
    assert batch == 2 and "memory" in reason  # 384 MiB per crop: one fits, the floor is 2
    assert plan_batch([256, 256], 32, 1000, CPU)[0] == 8
    assert plan_batch([256, 256], 32, 1000, GPU)[0] == 16


def test_imbalance_chooses_class_weights():
    rare = {"road": (0.6, objects(300)), "car": (0.395, objects(60)), "sign": (0.005, objects(12))}
    loss, weights, reason = plan_loss(fingerprint(classes=rare))
    assert (loss, weights) == ("dice_ce", "median") and "'sign'" in reason
    balanced = {"road": (0.5, objects(300)), "car": (0.3, objects(60)), "sign": (0.2, objects(12))}
    assert plan_loss(fingerprint(classes=balanced))[1] == "none"
    binary = {"background": (0.99, objects(256)), "lesion": (0.01, objects(8))}
    assert plan_loss(fingerprint(classes=binary))[1] == "none"  # Dice balances two classes


def test_gravity_aligned_scenes_get_no_vertical_flips():
    street = {"sky": (0.3, objects(400)), "building": (0.3, objects(200)), "road": (0.4, objects(480))}
    rows, cols = {"sky": 0.15, "building": 0.4, "road": 0.8}, {"sky": 0.5, "building": 0.45, "road": 0.5}
    fp = fingerprint((360, 480), classes=street, rows=rows, cols=cols)
    upright, reason = gravity_aligned(fp)
    assert upright and "'sky'" in reason and "'road'" in reason
    plan = make_plan(fp, CPU)
    assert plan["vflip"] == 0.0 and plan["rotate90"] == 0.0 and plan["tta"] == "left-right"
    cells = make_plan(fingerprint(), CPU)
    assert cells["vflip"] == 0.5 and cells["tta"] == "left-right + up-down"
    # a left/right layout as strong as the up/down one is no gravity signal
    assert not gravity_aligned(fingerprint((360, 480), classes=street, rows=rows,
                                           cols={"sky": 0.1, "building": 0.5, "road": 0.9}))[0]


def test_time_budget_and_precision_decisions():
    plan = make_plan(fingerprint(), Resources(gpus=[], memory_bytes=4 * 1024**3, budget_s=600))
    assert plan.overrides()["train"]["time_budget"] == "10m" and "epochs" not in plan.overrides()["train"]
    assert plan["base_filters"] == 16  # short CPU budget
    assert make_plan(fingerprint(), CPU).overrides()["train"]["epochs"] == round(1500 / math.ceil(100 / 8))
    assert make_plan(fingerprint(), GPU).overrides()["train"]["precision"] == "auto"
    assert "mixed_bfloat16" in next(d.reason for d in make_plan(fingerprint(), GPU).decisions if d.name == "precision")


def test_width_follows_the_passes_a_cpu_budget_buys():
    crop = [256, 256]  # 65536 pixels a crop: 2 cores at 24 k/s each train ~0.73 crops/s at 32 filters
    small, large = 24, 531
    one_hour = Resources(gpus=[], memory_bytes=4 * 1024**3, budget_s=3600)
    assert plan_width(one_hour, crop, small)[0] == 32  # ~110 passes
    width, reason = plan_width(one_hour, crop, large)  # ~5 passes
    assert width == 16 and "~5.0 passes over the 531 training crops on 2 CPU cores" in reason
    assert plan_width(dataclasses.replace(one_hour, cpu_cores=32), crop, large)[0] == 32  # ~79 passes
    assert plan_width(dataclasses.replace(one_hour, budget_s=None), crop, large)[0] == 32  # no budget
    assert plan_width(GPU, crop, large)[0] == 32


def test_flags_and_config_keys_win_over_the_plan(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("data: {path: data/nuclei, mask: binary}\ntrain: {batch_size: 3}\n")
    config, plan, *_ = planned_config(user, [{"augment": {"vflip": 0.0}}, {"model": {"depth": 2}}], resources=CPU)
    assert plan["vflip"] == 0.5 and config.augment.vflip == 0.0
    assert plan["batch_size"] != 3 and config.train.batch_size == 3
    assert plan["depth"] == 5 and config.model.depth == 2
    assert config.data.image_size == plan["crop"] and config.train.early_stopping_patience is None
    assert config.name == "nuclei-unet"
    assert sorted(plan.set_elsewhere(config)) == ["augment.vflip", "model.depth", "train.batch_size"]
    crop = "x".join(map(str, plan["crop"]))
    assert describe(config).startswith(f"crop {crop}, unet d2 f{plan['base_filters']}, batch 3, {plan['loss']}")
    assert describe(config).endswith(", flips h")


def test_plan_command_writes_a_config_that_trains(tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    assert plan_main(["--data", "data/nuclei", "--time-budget", "2m", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fingerprint of data/nuclei" in printed and "receptive field" in printed and "vflip" in printed
    written = yaml.safe_load(out.read_text())
    assert written["train"]["time_budget"] == "2m" and written["data"]["path"] == "data/nuclei"
    assert out.read_text().startswith("# Training plan")
    from app.config.loading import load_config

    assert load_config(out).model.depth == written["model"]["depth"]
    assert plan_main(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert math.isfinite(written["augment"]["rotate"])


def test_another_model_gets_the_planned_crop_on_its_divisor(tmp_path):
    from data.synthetic import write_shapes_dataset

    data = write_shapes_dataset(tmp_path / "shapes", count=8, size=(40, 56), num_classes=3)
    overrides = [{"data": {"path": str(data), "mask": "index"}}]
    assert make_plan(planned_config(overrides=overrides, resources=CPU)[2], CPU)["crop"] == [40, 56]
    config, plan, *_ = planned_config(overrides=overrides + [{"model": {"name": "fcn8s"}}], resources=CPU,
                                     log=lambda *_: None)
    assert config.model.options() == {"name": "fcn8s"} and config.data.image_size == [64, 64]
    assert {"model.name", "data.image_size"} <= set(plan.set_elsewhere(config))
    assert describe(config).startswith("crop 64x64, fcn8s, batch")


def test_an_encoder_chosen_over_the_plan_drops_the_plain_unet_options_the_plan_chose(tmp_path):
    from models.registry import accepted_options

    logged = []
    overrides = [{"data": {"path": "data/nuclei", "mask": "binary"}}, {"model": {"encoder": "resnet50",
                                                                                 "dropout": 0.1}}]
    config, plan, *_ = planned_config(overrides=overrides, resources=CPU, log=logged.append)
    options = config.model.builder_options()
    assert options["encoder"] == "resnet50" and options["dropout"] == 0.1 and "depth" in plan.overrides()["model"]
    assert set(options) <= accepted_options("unet", **options) and "depth" not in options
    assert logged == ["plan: model.base_filters, model.depth left out: unet with encoder resnet50 takes no such "
                      "option"]
    user_set = overrides + [{"model": {"depth": 3}}]  # an option the user set themselves is kept, and refused
    assert planned_config(overrides=user_set, resources=CPU, log=logged.append)[0].model.builder_options()["depth"] == 3
    plain, *_ = planned_config(overrides=overrides[:1], resources=CPU, log=logged.append)
    assert plain.model.builder_options()["depth"] == plan["depth"] and len(logged) == 2


def test_compression_specks_are_not_objects():
    """A JPEG-compressed mask of one large polyp has specks around its edge; they must not read as objects of
    1 px (which kept full resolution where the typical object was 228 px across)."""
    from data.fingerprint import image_statistics

    mask = np.zeros((300, 360), np.uint8)
    cv2.ellipse(mask, (180, 150), (110, 90), 0, 0, 360, 1, -1)
    noisy = cv2.imdecode(cv2.imencode(".jpg", mask * 255, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], 0)
    labels = (noisy > 127).astype(np.uint8)
    labels[5, 5] = labels[290, 350] = labels[10, 300:302] = 1  # stray clicks
    raw = components(labels)
    assert raw["area"].min() <= 2
    found = image_statistics(None, labels, 2)["objects"][1]
    assert found["area"].size == 1 and found["extent"][0] >= 215
    dots = np.zeros((50, 50), np.uint8)  # a mask of nothing but tiny objects keeps them (lone pixels go)
    dots[10, 10] = dots[30, 30:32] = dots[40, 5:7] = 1
    assert sorted(image_statistics(None, dots, 2)["objects"][1]["area"].tolist()) == [2, 2]
