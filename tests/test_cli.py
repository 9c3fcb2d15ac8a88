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


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"]])
def test_top_level_help_renders(argv, capsys):
    if not argv:
        assert main(argv) == 1  # no command: the help, and a non-zero exit
    else:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: napari-meg-unet" in out
    for name in SUBCOMMANDS:
        assert name in out


def _nested_parsers(parser, prefix=()):
    """Every (argv prefix, parser) pair below ``parser``, sub-subcommands included."""
    for action in parser._actions:
        if action.dest != "command" and not hasattr(action, "_name_parser_map"):
            continue
        for name, sub in getattr(action, "_name_parser_map", {}).items():
            yield (*prefix, name), sub
            yield from _nested_parsers(sub, (*prefix, name))


def test_every_nested_help_renders():
    parsers = list(_nested_parsers(build_parser()))
    assert len(parsers) > len(SUBCOMMANDS)  # bench's own subcommands are included
    for argv, parser in parsers:
        text = parser.format_help()  # raises on a bad %-format in any help string
        assert "usage: napari-meg-unet " + " ".join(argv) in text


def test_user_error_is_one_line(capsys, tmp_path):
    code = main(["simulate", "--design", "multi", "--n-events", "-3", "--out", str(tmp_path / "s")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("napari-meg-unet simulate: error: ")
    assert "n_events" in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (MemoryError("Unable to allocate 9.4 GiB"), 1, "out of memory"),
        (KeyboardInterrupt(), 130, "interrupted, nothing written"),
        (ZeroDivisionError("boom"), 1, "ZeroDivisionError: boom (run with --debug"),
        (KeyError("x"), 1, "KeyError: 'x' (run with --debug"),
        (TypeError("bad type"), 2, "error: bad type"),
    ],
)
def test_every_exception_becomes_one_line(monkeypatch, capsys, exc, code, text):
    import napari_meg_unet.cli._bench as bench

    def boom(args):
        raise exc

    monkeypatch.setattr(bench, "_run_core", boom)
    assert main(["bench", "core"]) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_interrupt_says_what_was_kept(monkeypatch, capsys):
    import napari_meg_unet.cli._bench as bench
    from napari_meg_unet.cli._common import Interrupted

    def stop(args):
        raise Interrupted("kept run/last.pt (resume with --resume)")

    monkeypatch.setattr(bench, "_run_core", stop)
    assert main(["bench", "core"]) == 130
    assert "interrupted, kept run/last.pt" in capsys.readouterr().err


def test_debug_shows_the_traceback(monkeypatch):
    import napari_meg_unet.cli._bench as bench

    def boom(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(bench, "_run_core", boom)
    with pytest.raises(ZeroDivisionError):
        main(["bench", "core", "--debug"])
    monkeypatch.setenv("NAPARI_MEG_UNET_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["bench", "core"])


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
