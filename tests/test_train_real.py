"""Training on real template data: thesis and mesh U-Nets, mesh provenance, predict, stc."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_meg_unet.checkpoint import load_checkpoint
from napari_meg_unet.cli import main
from napari_meg_unet.dataset import IncompatibleDataError, make_splits
from napari_meg_unet.models import MeshHierarchy, loss_fn
from napari_meg_unet.train import load_model, predict, to_source_estimate, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def splits(template_hm, tmp_path_factory):
    return make_splits(
        template_hm, design="multi", n_train=8, n_val=4, n_test=4, seed=11,
        out=tmp_path_factory.mktemp("real") / "splits", n_dipoles=1, verbose=False,
    )  # fmt: skip


def test_mesh_unet_trains_and_predicts_without_the_head_model(template_hm, splits, tmp_path):
    hm = template_hm
    summary = train(model="mesh", mesh=hm, train=splits["train"], val=splits["val"],
                    out_dir=tmp_path, epochs=1, batch_size=4, device="cpu",
                    root_features=4)  # fmt: skip
    assert summary["epochs_done"] == 1 and np.isfinite(summary["best_dle_mm"])
    ckpt = load_checkpoint(tmp_path / "best.pt")
    mesh = MeshHierarchy.from_headmodel(hm, "rh")
    assert ckpt["mesh_fingerprint"] == mesh.fingerprint
    assert ckpt["headmodel_fingerprint"] == hm.fingerprint
    assert ckpt["ch_names"] == hm.ch_names
    # The hierarchy travels with the checkpoint: no head model needed to predict.
    probs = predict(tmp_path / "best.pt", splits["test"], device="cpu")
    assert probs.shape == (4, len(hm.rows("rh")), splits["test"].n_times)
    again = predict(tmp_path / "best.pt", splits["test"], headmodel=hm, device="cpu")
    np.testing.assert_array_equal(probs, again)
    with pytest.raises(IncompatibleDataError, match="hemi='lh'"):
        train(model="mesh", mesh=MeshHierarchy.from_headmodel(hm, "lh"),
              train=splits["train"], val=splits["val"], out_dir=tmp_path / "lh", epochs=1,
              batch_size=4, device="cpu")  # fmt: skip
    coarser = MeshHierarchy.from_headmodel(hm, "rh", levels=2)
    with pytest.raises(IncompatibleDataError, match="is not the run's"):
        train(mesh=coarser, train=splits["train"], val=splits["val"], out_dir=tmp_path,
              epochs=2, resume=True, device="cpu")  # fmt: skip
    stc = to_source_estimate(probs[0], hm, "rh", tmin=0.0, sfreq=splits["test"].meta["sfreq"])
    np.testing.assert_allclose(stc.rh_data, probs[0], rtol=1e-6)
    assert not stc.lh_data.any()


def test_mesh_cpu_preset_trains_with_its_fixed_class_weights(template_hm, splits, tmp_path):
    """The 'cpu' recipe weights the classes 1:20 (not by inverse frequency), without dropout."""
    summary = train(model="mesh", preset="cpu", mesh=template_hm, train=splits["train"],
                    val=splits["val"], out_dir=tmp_path, epochs=1, batch_size=4,
                    device="cpu", seed=3)  # fmt: skip
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["model_config"]["preset"] == "cpu" and ckpt["model_config"]["dropout"] == 0.0
    torch.testing.assert_close(torch.as_tensor(ckpt["class_weights"]), torch.tensor([1.0, 20.0]))
    model, _ = load_model(tmp_path / "best.pt")
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.asarray(splits["val"].inputs)))
    targets = torch.from_numpy(np.asarray(splits["val"].targets)).long()
    weighted = loss_fn(logits, targets, class_weights=torch.tensor([1.0, 20.0]))
    assert summary["history"][-1]["val_loss"] == pytest.approx(float(weighted), rel=1e-5)
    assert float(loss_fn(logits, targets)) != pytest.approx(float(weighted), rel=1e-3)


def test_cli_trains_mesh_model_on_template_data(template_hm, splits, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "mesh", "--train", str(splits["train"].path),
               "--val", str(splits["val"].path), "--out", str(out), "--epochs", "1",
               "--batch-size", "4", "--device", "cpu", "--set", "root_features=4",
               "--json", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert json.loads(captured.out)["model_config"]["name"] == "mesh"
    thesis = tmp_path / "thesis"
    train(train=splits["train"], val=splits["val"], out_dir=thesis, epochs=1, batch_size=4,
          device="cpu", root_features=4, levels=3)  # fmt: skip
    probs = predict(thesis, splits["test"], headmodel=template_hm, hemi="rh", device="cpu")
    assert probs.shape[0] == 4 and np.all((probs >= 0) & (probs <= 1))
