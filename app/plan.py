"""Plan a training run from the dataset: `python -m app.plan --data D [--time-budget 1h] [--out plan.yaml]`.

Scans the dataset once (every file, as `app.check_data` does), prints its fingerprint (image sizes, channels and
intensities, class pixel shares, object sizes per class, where classes sit in the frame) and the plan that the
rules in docs/planning.md derive from it, with the reason for each choice, and writes the plan as a config
(default plan.yaml) to edit and pass to `python -m app.train --config plan.yaml`. `python -m app.train --data D`
without a config trains this plan directly. Flags and `--set` keys win over the plan.
"""
import argparse
import pathlib
import sys

import yaml

from app.cli import fail_cleanly
from app.train import FLAGS, LAYOUT_CHOICES, MASK_CHOICES


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset folder or CSV file (default: the config's data.path)")
    parser.add_argument("--config", help="YAML config whose keys win over the plan (e.g. how to read the masks)")
    parser.add_argument("--layout", choices=LAYOUT_CHOICES, help="dataset layout (default auto: detected)")
    parser.add_argument("--mask", choices=MASK_CHOICES, help="mask encoding")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--time-budget", metavar="DURATION", help="wall-clock training budget (90s, 30m, 1h)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config key (wins over the plan), e.g. --set augment.vflip=0")
    parser.add_argument("--out", default="plan.yaml", help="config file to write (default plan.yaml)")
    return parser.parse_args(argv)


def overrides_from(args):
    from app.config.loading import parse_override

    overrides = []
    for flag in ("data", "layout", "mask", "num_classes", "time_budget"):
        value = getattr(args, flag)
        if value is not None:
            nested = value
            for key in reversed(FLAGS[flag]):
                nested = {key: nested}
            overrides.append(nested)
    return overrides + [parse_override(text) for text in args.set]


def config_text(config, plan):
    """The config as YAML, headed by the plan's reasons as comments."""
    lines = ["# Training plan from python -m app.plan: edit freely, then python -m app.train --config <this file>.",
             "# Why each planned value:"]
    for decision in plan.decisions:
        target = decision.key or decision.name
        lines.append(f"#   {target}: {decision.value if decision.value is not None else 'null'} -- {decision.reason}")
    return "\n".join(lines) + "\n" + yaml.safe_dump(config.to_dict(), sort_keys=False)


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    from app.planning.plan import planned_config
    from app.runtime.outputs import write_text

    config, plan, fingerprint, _ = planned_config(args.config, overrides_from(args))
    print(f"fingerprint of {config.data.path}:")
    print(yaml.safe_dump(fingerprint.to_dict(), sort_keys=False, width=110).rstrip())
    print("\nplan:")
    print(plan.table())
    out = pathlib.Path(args.out)
    write_text(out, config_text(config, plan))
    print(f"\nwritten: {out} (train it: python -m app.train --config {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
