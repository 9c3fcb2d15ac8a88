"""The CLI dispatcher: every subcommand has --help; dataset builds disjoint splits."""

import json
import subprocess
import sys

import pytest

from napari_meg_unet.cli import SUBCOMMANDS, build_parser, main


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: napari-meg-unet" in capsys.readouterr().out


def test_all_subcommands_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(SUBCOMMANDS)


def test_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "napari_meg_unet.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("napari-meg-unet ")


def test_bad_fraction_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--linear-only", "--lambda2", "1/0"])
    assert exc.value.code == 2
    assert "--lambda2 must be a number" in capsys.readouterr().err


def test_dataset_command(tmp_path, capsys, template_hm):
    out = tmp_path / "ds"
    argv = ["dataset", "--out", str(out), "--design", "multi", "--n-dipoles", "2"]
    argv += ["--n-train", "6", "--n-val", "3", "--n-test", "3", "--json", "--no-progress"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert {k: v["n"] for k, v in result["splits"].items()} == {"train": 6, "val": 3, "test": 3}
    assert result["headmodel_fingerprint"] == template_hm.fingerprint
    splits = json.loads((out / "splits.json").read_text())
    assert splits["design"] == "multi"
    assert main(argv) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
