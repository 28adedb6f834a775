"""Properties of the planner over any fingerprint (issue 24): whatever the data's sizes, aspect ratios, channels,
class counts, object scales and orientation, the plan's crop, quarter turns, depth and batch fit together, the
plan is a valid config, and its augmentation yields batches of exactly the planned crop."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config.loading import load_config
from app.planning.plan import Resources, make_plan
from app.planning.rules import BOTTLENECK, DEPTHS
from data.augment import train_transform
from data.fingerprint import Fingerprint, ObjectStats

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
CPU = Resources(gpus=[], memory_bytes=4 * 1024**3, budget_s=None)


def _spread(low, mid, high):
    return {"min": low, "p5": low, "p10": low, "p50": mid, "p90": high, "p95": high, "max": high}


@st.composite
def fingerprints(draw):
    height = draw(st.integers(16, 4000))
    width = draw(st.integers(16, 4000))
    vary = draw(st.sampled_from([1.0, 1.2, 3.0]))
    classes = draw(st.integers(2, 60))
    channels = draw(st.sampled_from([1, 3, 4, 8]))
    images = draw(st.integers(2, 3000))
    names = [f"class_{i}" for i in range(classes)]
    shares = np.array(draw(st.lists(st.floats(1e-5, 1.0), min_size=classes, max_size=classes)))
    shares = shares / shares.sum()
    upright = draw(st.booleans())
    objects, rows = {}, {}
    for index, name in enumerate(names):
        if draw(st.integers(0, 9)) == 0 and index:  # a class without training pixels
            objects[name] = None
            continue
        extent = draw(st.floats(1, max(height, width)))
        thickness = draw(st.floats(1, extent))
        area = max(1.0, extent * thickness * draw(st.floats(0.3, 1.0)))
        objects[name] = ObjectStats(draw(st.integers(1, 10_000)), _spread(area / 4, area, area * 4),
                                    _spread(max(1.0, extent / 3), extent, extent * 3),
                                    _spread(max(1.0, thickness / 2), thickness, thickness * 2))
        rows[name] = index / classes if upright else 0.5
    return Fingerprint(
        class_names=names, images_per_split={"train": images, "val": max(1, images // 4)},
        height=_spread(height / vary, height, height * vary), width=_spread(width / vary, width, width * vary),
        channels=channels, file_channels={channels: images}, intensity_mean=[0.4] * channels,
        intensity_std=[0.2] * channels, class_share=dict(zip(names, map(float, shares))),
        class_images={n: images for n in names}, class_row={n: rows.get(n) for n in names},
        class_col={n: (0.5 if objects[n] else None) for n in names}, objects=objects,
        total_pixels=images * height * width)


resources = st.builds(Resources, gpus=st.sampled_from([[], [{"name": "H100", "compute_capability": (9, 0)}]]),
                      memory_bytes=st.sampled_from([512 * 1024**2, 4 * 1024**3, 40 * 1024**3]),
                      budget_s=st.sampled_from([None, 60.0, 1200.0, 36000.0]), cpu_cores=st.sampled_from([2, 16]))


@EXAMPLES
@given(fp=fingerprints(), machine=resources)
def test_every_plan_fits_together(fp, machine):
    plan = make_plan(fp, machine)
    crop, depth, batch = plan["crop"], plan["depth"], plan["batch_size"]
    assert depth in DEPTHS
    assert all(side % 2**depth == 0 and side >= 2**depth for side in crop)
    assert min(crop) / 2**depth >= BOTTLENECK or depth == DEPTHS[0]
    assert plan["rotate90"] == 0 or crop[0] == crop[1], "quarter turns need square crops"
    assert plan["rotate90"] == 0 or plan["vflip"] > 0, "quarter turns only where up/down flips are allowed"
    assert 2 <= batch <= 64
    working = plan["resize"] or list(fp.median_size)
    assert plan["resize"] is None or all(8 <= s <= m for s, m in zip(plan["resize"], fp.median_size))
    side = 512 if machine.gpus else 256
    fits_whole = working[0] * working[1] <= side * side
    assert fits_whole or crop[0] * crop[1] <= 1.3 * side * side
    load_config(None, [plan.overrides()])  # the plan is a valid config: every key known, every value in range


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(fp=fingerprints(), machine=resources, image_side=st.tuples(st.integers(17, 700), st.integers(17, 700)),
       seed=st.integers(0, 2**16))
def test_planned_augmentation_yields_the_planned_crop(fp, machine, image_side, seed):
    """Any image (any size, wider or taller than the crop) comes out at exactly the crop's shape, whatever the
    quarter turns, flips and scaling the plan chose."""
    plan = make_plan(fp, machine)
    options = plan.overrides()["augment"]
    transform = train_transform(plan["crop"], plan["resize"], **options)
    transform.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    image = rng.random((*image_side, fp.channels), np.float32)
    mask = rng.integers(0, len(fp.class_names), image_side).astype(np.uint8)
    for _ in range(3):
        out = transform(image=image, mask=mask)
        assert out["image"].shape == (*plan["crop"], fp.channels)
        assert out["mask"].shape == tuple(plan["crop"])
