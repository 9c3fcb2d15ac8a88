"""Inverses of MNE objects: SourceEstimates equal to MNE's apply_inverse (vertices, times, data)."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from mne.minimum_norm import apply_inverse, apply_inverse_epochs, apply_inverse_raw

from napari_meg_unet.inverse import (
    invert_recording,
    make_inverse,
    rank_report,
    source_estimates,
    write_source_estimate,
)
from napari_meg_unet.recordings import read_segments


@pytest.fixture(autouse=True, scope="module")
def _quiet_mne():
    with mne.use_log_level("error"):
        yield


@pytest.fixture(scope="module")
def inv_fixed(template_hm):
    return make_inverse(template_hm, verbose=False)


def _data(info, n, n_times, seed):
    rng = np.random.default_rng(seed)
    sd = np.array([{"mag": 1e-13, "grad": 2e-12}.get(t, 5e-6) for t in info.get_channel_types()])
    return rng.standard_normal((n, len(sd), n_times)) * sd[:, None]


def _same_stc(ours, ref, rtol=1e-9):
    assert type(ours) is type(ref)
    assert ours.subject == ref.subject
    assert ours.tmin == pytest.approx(ref.tmin, abs=1e-12)
    assert ours.tstep == pytest.approx(ref.tstep, rel=1e-12)
    for a, b in zip(ours.vertices, ref.vertices, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ours.data, ref.data, rtol=rtol, atol=rtol * np.abs(ref.data).max())


@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA"])
def test_evoked_epochs_raw_equal_mne(template_hm, inv_fixed, method):
    hm, inv = template_hm, inv_fixed
    data = _data(hm.info, 3, 12, seed=0)
    evoked = mne.EvokedArray(data[0], hm.info, tmin=-0.05, nave=7, verbose=False)
    ours = source_estimates(inv, evoked, methods=[method], lambda2=1 / 4)[method]
    _same_stc(ours, apply_inverse(evoked, inv, 1 / 4, method))  # evoked's own nave
    assert ours.subject == "fsaverage5"
    forced = source_estimates(inv, evoked, methods=[method], lambda2=1 / 4, nave=2)[method]
    other = evoked.copy()
    other.nave = 2
    _same_stc(forced, apply_inverse(other, inv, 1 / 4, method))
    epochs = mne.EpochsArray(data, hm.info, tmin=0.1, verbose=False)
    ours = source_estimates(inv, epochs, methods=[method])[method]
    refs = apply_inverse_epochs(epochs, inv, 1 / 9, method)
    assert len(ours) == 3
    for a, b in zip(ours, refs, strict=True):
        _same_stc(a, b)
    raw = mne.io.RawArray(data[1], hm.info, verbose=False)
    _same_stc(source_estimates(inv, raw, methods=[method])[method],
              apply_inverse_raw(raw, inv, 1 / 9, method))  # fmt: skip


@pytest.mark.slow  # two eLORETA weight fits (the kernels' equality is in test_inverse.py)
def test_eloreta_evoked_equals_mne(template_hm, inv_fixed):
    inv = inv_fixed
    data = _data(template_hm.info, 1, 6, seed=4)[0]
    evoked = mne.EvokedArray(data, template_hm.info, tmin=0.01, nave=2, verbose=False)
    ours = source_estimates(inv, evoked, methods=["eLORETA"])["eLORETA"]
    _same_stc(ours, apply_inverse(evoked, inv, 1 / 9, "eLORETA", method_params=dict(
        eps=1e-6, max_iter=20, force_equal=False)), rtol=1e-6)  # fmt: skip


def test_loose_operator_magnitude_normal_and_vector(template_hm):
    hm = template_hm
    inv = make_inverse(hm, loose=0.3, verbose=False)
    evoked = mne.EvokedArray(_data(hm.info, 1, 8, seed=1)[0], hm.info, nave=3, verbose=False)
    for pick_ori in (None, "normal", "vector"):
        ours = source_estimates(inv, evoked, methods=["MNE", "dSPM"], pick_ori=pick_ori)
        for method, stc in ours.items():
            _same_stc(stc, apply_inverse(evoked, inv, 1 / 9, method, pick_ori=pick_ori))
    assert isinstance(ours["dSPM"], mne.VectorSourceEstimate)


def test_missing_and_bad_channels_are_named(template_hm, inv_fixed):
    hm, inv = template_hm, inv_fixed
    evoked = mne.EvokedArray(_data(hm.info, 1, 4, seed=2)[0], hm.info, verbose=False)
    evoked.info["bads"] = [hm.ch_names[5]]
    with pytest.raises(ValueError, match=f"marked bad in the data: \\['{hm.ch_names[5]}'\\]"):
        source_estimates(inv, evoked)
    evoked.info["bads"] = []
    with pytest.raises(ValueError, match="missing from the data"):
        source_estimates(inv, evoked.copy().drop_channels(hm.ch_names[:2]))
    with pytest.raises(TypeError, match="mne.Evoked, mne.Epochs"):
        source_estimates(inv, evoked.data)


def test_writing_source_estimates(template_hm, tmp_path):
    hm = template_hm
    inv = make_inverse(hm, loose=0.3, verbose=False)
    evoked = mne.EvokedArray(_data(hm.info, 1, 5, seed=3)[0], hm.info, tmin=0.2, verbose=False)
    stc = source_estimates(inv, evoked, methods=["dSPM"])["dSPM"]
    files = write_source_estimate(stc, tmp_path / "cond-dSPM")
    assert [f.name for f in files] == ["cond-dSPM-lh.stc", "cond-dSPM-rh.stc"]
    back = mne.read_source_estimate(tmp_path / "cond-dSPM")
    assert back.tmin == pytest.approx(0.2) and back.subject is None or back.subject == stc.subject
    np.testing.assert_allclose(back.data, stc.data, rtol=1e-6)
    with pytest.raises(FileExistsError):
        write_source_estimate(stc, tmp_path / "cond-dSPM")
    vec = source_estimates(inv, evoked, methods=["dSPM"], pick_ori="vector")["dSPM"]
    with pytest.raises(ValueError, match="only be written as h5"):
        write_source_estimate(vec, tmp_path / "vec")
    try:
        import h5io  # noqa: F401
    except ImportError:  # the message says what is missing (h5io is optional)
        with pytest.raises(ImportError, match="pip install h5io"):
            write_source_estimate(vec, tmp_path / "vec", ftype="h5")
        assert not list(tmp_path.glob("vec*"))
    else:
        (path,) = write_source_estimate(vec, tmp_path / "vec", ftype="h5")
        np.testing.assert_allclose(mne.read_source_estimate(path).data, vec.data, rtol=1e-6)


def test_real_evoked_conditions_each_with_its_nave_equal_mne(sample_hm, shared_data):
    ave = shared_data / "sample" / "MEG" / "test-ave.fif.gz"
    result = invert_recording(sample_hm, ave, methods=("MNE", "dSPM", "sLORETA"))
    assert [c.nave for c in result.conditions] == [3, 6, 6, 6]
    assert result.rank.whitener_rank == 302 and not result.rank.sss
    for cond, evoked in zip(result.conditions, mne.read_evokeds(ave), strict=True):
        assert cond.name == evoked.comment and cond.snr is not None
        for method, stc in cond.stcs.items():
            _same_stc(stc, apply_inverse(evoked, result.inv, 1 / 9, method))  # its own nave
        assert 0.2 < cond.explained["MNE/dSPM/sLORETA"] < 1
    stack = result.conditions[1].stack(sample_hm.rows("rh"), "column-max")
    assert stack.shape == (1, 3, len(sample_hm.rows("rh")), 421)
    np.testing.assert_allclose(np.abs(stack).max(axis=2), 1.0, rtol=1e-6)


def test_sss_data_with_a_non_sss_covariance_states_the_rank(sample_hm, shared_data):
    raw = shared_data / "sample" / "MEG" / "sample_audvis_trunc_raw_sss.fif"
    (seg,) = read_segments(raw, tmin=0.1, tmax=0.9)
    inv = make_inverse(sample_hm, verbose=False)
    report = rank_report(inv, seg.info)
    assert report.sss and report.whitener_rank == 302
    meg = sum(v for k, v in report.data_rank.items() if k in ("meg", "mag", "grad"))
    assert meg < 80
    assert f"MEG rank {meg}" in report.message and "not SSS-processed" in report.message
    result = invert_recording(sample_hm, [seg], methods=("dSPM",))
    assert result.rank.message == report.message
    stc = result.conditions[0].stcs["dSPM"]
    full = mne.io.read_raw_fif(raw, preload=True)
    start = seg.inst.first_samp - full.first_samp
    ref = apply_inverse_raw(full, inv, 1 / 9, "dSPM", start=start, stop=start + seg.n_times)
    np.testing.assert_allclose(stc.data, ref.data, rtol=1e-8, atol=1e-8 * np.abs(ref.data).max())
    assert stc.tmin == pytest.approx(seg.tmin) and ref.tmin == pytest.approx(seg.tmin)
