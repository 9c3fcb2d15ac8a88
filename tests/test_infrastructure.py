"""Shared machinery: config dataclasses, plain functions, verbose, validation, size guards."""

import argparse
import inspect
import logging

import numpy as np
import pytest

from napari_meg_unet import _logging
from napari_meg_unet._config import add_cli_options, config_from_args, takes_config
from napari_meg_unet._resources import (
    InsufficientResourcesError,
    ResourceEstimate,
    check_resources,
    format_bytes,
)
from napari_meg_unet._validation import check_finite_data, check_int, check_number
from napari_meg_unet.configs import InverseConfig, SimulationConfig
from napari_meg_unet.progress import Progress, plain


def test_config_validates_each_option_and_the_rules_between_them():
    with pytest.raises(ValueError, match="design must be one of"):
        SimulationConfig(design="grid")
    with pytest.raises(ValueError, match="n_events is required"):
        SimulationConfig(design="multi")
    with pytest.raises(ValueError, match="snr must be > 0"):
        SimulationConfig(snr=0)
    with pytest.raises(TypeError, match="did you mean 'design'"):
        SimulationConfig.build(desing="multi")
    cfg = SimulationConfig(design="multi", n_events=3, snr=(0.5, 3), n_dipoles=2)
    assert cfg.snr == (0.5, 3.0) and cfg.n_dipoles == (2, 2)
    assert SimulationConfig.from_dict(cfg.to_dict()) == cfg
    assert InverseConfig(lambda2="1/9").lambda2 == pytest.approx(1 / 9)


def test_cli_arguments_come_from_the_config():
    parser = argparse.ArgumentParser(prog="x")
    add_cli_options(parser, SimulationConfig)
    add_cli_options(parser, InverseConfig, exclude=("nave", "hemi", "precision"))
    assert "95%" not in parser.format_help()  # renders (argparse %-formats help)
    args = parser.parse_args(
        ["--design", "multi", "--n-events", "4", "--snr", "1", "3", "--noise", "none",
         "--depth", "none", "--lambda2", "1/9", "--off-grid"]
    )  # fmt: skip
    sim = config_from_args(SimulationConfig, args)
    assert (sim.design, sim.n_events, sim.snr, sim.noise, sim.off_grid) == (
        "multi", 4, (1.0, 3.0), None, True
    )  # fmt: skip
    inv = config_from_args(InverseConfig, args)
    assert inv.depth is None and inv.lambda2 == pytest.approx(1 / 9)
    with pytest.raises(SystemExit):
        parser.parse_args(["--design", "grid"])
    # an option without an argument of its own (cli=False) is not read from another's
    from napari_meg_unet.configs import SensorNetConfig

    parser.add_argument("--lr", type=float, default=None)  # e.g. the U-Net's
    add_cli_options(parser, SensorNetConfig)
    args = parser.parse_args(["--lr", "0.5", "--sensor-blocks", "7"])
    sensor = config_from_args(SensorNetConfig, args)
    assert (sensor.n_blocks, sensor.lr) == (7, SensorNetConfig().lr)
    assert config_from_args(SensorNetConfig, args, lr=0.25).lr == 0.25


def test_takes_config_signature_doc_and_overrides():
    @takes_config(SimulationConfig)
    def run(hm, *, config, verbose=None):
        """Run.

        Parameters
        ----------
        hm : object
        %(options)s
        """
        return config

    params = inspect.signature(run).parameters
    assert list(params)[:3] == ["hm", "config", "design"] and list(params)[-1] == "verbose"
    assert params["snr"].default == 1.0
    assert "design : 'sweep' | 'multi' | 'extended'" in run.__doc__
    base = SimulationConfig(design="multi", n_events=2)
    assert run(None, config=base, seed=5) == base.replace(seed=5)
    with pytest.raises(ValueError, match="n_events is required"):
        run(None, design="multi")


def test_takes_config_passes_other_keywords_to_var_keyword():
    """A function with **kwargs receives the keywords that are not options; others refuse them."""

    @takes_config(InverseConfig)
    def with_extra(x, *, config, **extra):
        return config, extra

    cfg, extra = with_extra(1, loose=0.2, dropout=0.0, config=InverseConfig(depth=None))
    assert (cfg.loose, cfg.depth) == (0.2, None) and extra == {"dropout": 0.0}
    params = inspect.signature(with_extra).parameters
    assert "loose" in params and list(params.values())[-1].kind is inspect.Parameter.VAR_KEYWORD
    with pytest.raises(ValueError, match="loose must be"):
        with_extra(1, loose=2.0, dropout=0.0)

    @takes_config(InverseConfig)
    def without(x, *, config):
        return config

    with pytest.raises(TypeError, match="Unknown InverseConfig option"):
        without(1, dropout=0.0)


def test_every_logs_progress_at_most_once_per_interval():
    from napari_meg_unet.progress import every, run

    def iter_work():
        yield "not progress"
        for i in range(3):
            yield Progress("work", i + 1, 3, f"step {i + 1}")
        return "done"

    lines = []
    assert run(iter_work(), every(3600, lines.append)) == "done"
    assert lines == ["work: step 1"]  # the first event, then nothing within the hour
    lines.clear()
    run(iter_work(), every(0, lines.append))
    assert lines == ["work: step 1", "work: step 2", "work: step 3"]


def test_plain_function_has_the_generator_signature_and_doc():
    def iter_work(n, *, scale=2):
        """Do work, yielding progress.

        Parameters
        ----------
        n : int
            Steps.

        Yields
        ------
        progress : Progress

        Returns
        -------
        total : int
        """
        for i in range(n):
            yield Progress("work", i + 1, n)
        return n * scale

    work = plain(iter_work)
    assert work(3) == 6 and work.__name__ == "work"
    assert inspect.signature(work) == inspect.signature(iter_work)
    assert "Yields" not in work.__doc__ and "Returns" in work.__doc__
    assert "Runs :func:`iter_work` to completion" in work.__doc__


def test_verbose_sets_the_level_only_while_the_function_runs(caplog):
    log = logging.getLogger("napari_meg_unet.test")
    seen = []

    @_logging.verbose
    def func(verbose=None):
        seen.append(log.getEffectiveLevel())

    @_logging.verbose
    def gen(verbose=None):
        seen.append(log.getEffectiveLevel())
        yield 1
        seen.append(log.getEffectiveLevel())

    before = _logging.logger.level
    func(verbose=True)
    func(verbose="debug")
    for _ in gen(verbose=True):
        seen.append(("consumer", log.getEffectiveLevel()))
    assert seen == [logging.INFO, logging.DEBUG, logging.INFO, ("consumer", before), logging.INFO]
    assert _logging.logger.level == before
    with pytest.raises(ValueError, match="verbose must be"):
        func(verbose="loud")


def test_validation_messages_name_the_parameter():
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        check_int(0, "n", minimum=1)
    with pytest.raises(ValueError, match="x must be a finite number"):
        check_number(float("nan"), "x")
    data = np.zeros((5, 2, 3))
    data[3, 1, 2] = np.inf
    with pytest.raises(ValueError, match=r"data.npy contains NaN or Inf values: event 3"):
        check_finite_data(data, where="data.npy", chunk=2)


def test_resource_guard_refuses_and_force_overrides(tmp_path):
    huge = ResourceEstimate("simulate", memory=2**60, disk=2**60)
    with pytest.raises(InsufficientResourcesError, match="force=True"):
        check_resources(huge, out=tmp_path / "x")
    check_resources(huge, out=tmp_path / "x", force=True)
    check_resources(ResourceEstimate("small", memory=1024, disk=1024), out=tmp_path / "x")
    assert format_bytes(1536) == "1.5 KiB"
