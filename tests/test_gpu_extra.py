"""setup.cfg's TensorFlow extras: `gpu` gives the CUDA wheels, the CPU installs get none, never both wheels.

Resolved from setup.cfg itself (what a fresh `pip install -e ".[...]"` reads) with the markers evaluated for each
platform, plus the installed tensorflow-cpu wheel's own requirements.
"""
import configparser
import importlib.metadata
import pathlib

import pytest
from packaging.requirements import Requirement

SETUP_CFG = pathlib.Path(__file__).parents[1] / "setup.cfg"
LINUX_X86 = {"platform_machine": "x86_64", "sys_platform": "linux", "platform_system": "Linux"}
LINUX_ARM = {"platform_machine": "aarch64", "sys_platform": "linux", "platform_system": "Linux"}
MAC_ARM = {"platform_machine": "arm64", "sys_platform": "darwin", "platform_system": "Darwin"}


def _lines(text):
    return [line.strip() for line in text.splitlines() if line.strip()]


def direct_requirements(extras, environment):
    """{name: Requirement} that `pip install ".[extras]"` asks for directly, self-references followed."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    extras_table = {name: _lines(text) for name, text in config["options.extras_require"].items()}
    wanted = [Requirement(line) for line in _lines(config["options"]["install_requires"])]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in map(Requirement, extras_table[extra]):
            if requirement.name == "segkit":
                pending.extend(requirement.extras)
            else:
                wanted.append(requirement)
    return {r.name: r for r in wanted if r.marker is None or r.marker.evaluate({**environment, "extra": ""})}


def tensorflow_wheels(requirements):
    return sorted(name for name in requirements if name in ("tensorflow", "tensorflow-cpu"))


@pytest.mark.parametrize("extras", [(), ("cpu",), ("dev",), ("test", "cpu")])
def test_cpu_installs_on_x86_get_tensorflow_cpu_and_no_cuda(extras):
    requirements = direct_requirements(extras, LINUX_X86)
    assert tensorflow_wheels(requirements) == ([] if extras == () else ["tensorflow-cpu"])
    if extras:
        assert str(requirements["tensorflow-cpu"].specifier) == "==2.21.0"
    assert not [name for name, requirement in requirements.items()
                if name.startswith("nvidia-") or any("cuda" in extra for extra in requirement.extras)]


@pytest.mark.parametrize("extras", [("gpu",), ("gpu", "test")])
def test_gpu_extra_gives_tensorflow_with_cuda_and_not_tensorflow_cpu(extras):
    requirements = direct_requirements(extras, LINUX_X86)
    assert tensorflow_wheels(requirements) == ["tensorflow"]
    assert requirements["tensorflow"].extras == {"and-cuda"}
    assert str(requirements["tensorflow"].specifier) == "==2.21.0"
    assert "pytest" in requirements if "test" in extras else "pytest" not in requirements


@pytest.mark.parametrize("environment", [LINUX_ARM, MAC_ARM])
def test_other_machines_get_the_full_tensorflow_wheel_whatever_the_extras(environment):
    for extras in [(), ("dev",), ("gpu",)]:
        assert tensorflow_wheels(direct_requirements(extras, environment)) == ["tensorflow"]


def test_dev_is_cpu_plus_test_and_all_pins_agree():
    dev = direct_requirements(("dev",), LINUX_X86)
    assert dev == direct_requirements(("cpu", "test"), LINUX_X86)
    gpu = direct_requirements(("gpu", "test"), LINUX_X86)
    shared = set(dev) & set(gpu)
    assert {"keras", "pytest", "jax"} <= shared
    assert all(dev[name].specifier == gpu[name].specifier for name in shared)


def test_the_installed_tensorflow_cpu_wheel_needs_no_cuda_package():
    try:
        requires = importlib.metadata.requires("tensorflow-cpu")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tensorflow-cpu is not installed here")
    unconditional = [Requirement(line) for line in requires]
    unconditional = [r for r in unconditional if r.marker is None or r.marker.evaluate({"extra": ""})]
    assert not [r.name for r in unconditional if r.name.startswith("nvidia-")]
    assert unconditional


def test_a_missing_tensorflow_is_one_line_naming_the_extras(capsys):
    """A bare `pip install -e .` on x86_64 brings no TensorFlow: commands say which extra to install."""
    from app.cli import fail_cleanly

    @fail_cleanly
    def command(argv=None):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    assert command([]) == 2
    assert capsys.readouterr().err.splitlines() == [
        'error: TensorFlow is not installed: install segkit with an extra, pip install -e ".[cpu]" '
        '(or ".[gpu]" for NVIDIA GPUs)']
