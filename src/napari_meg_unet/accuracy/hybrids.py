"""Estimators built on a trained network: its peaks off the grid, and network-initialised fits.

Both run the network on the event's sensor data exactly as the accuracy
protocol does (:class:`NetworkMaps`: the input images are made with the
inverse settings of the network's training set, its methods, lambda2, loose,
depth, nave, normalisation and precision from the checkpoint, with the kernels
of :func:`~napari_meg_unet.dataset.iter_build_dataset`; the probabilities come
from :func:`~napari_meg_unet.train.iter_probabilities`; the event's map is
their mean over the epoch, the ``window`` map the network's own row is scored
on) and read the sources off its map with
:func:`~napari_meg_unet.peers.peaks.propose_peaks`:
the local maxima over the mesh adjacency that reach ``threshold`` times the
map's maximum, at most ``max_sources`` (5, the most sources of the benchmark's
multi-dipole sets). The number of sources is therefore the network's (not
given); ``threshold`` is chosen on the validation sets only (the peers'
search, :mod:`napari_meg_unet.peers.search`). Both return dipoles at
continuous positions, scored like the dipole fits (the strongest ``n`` of
them against the ``n`` true sources).

``centre-of-mass`` (label ``"<network> + centre of mass"``)
    Each peak moves to the probability-weighted centre of mass of the peak
    vertex and its mesh neighbours
    (:func:`~napari_meg_unet.peers.peaks.centre_of_mass`), so the estimate can
    fall between grid vertices; its amplitude is the peak's probability.
    Against the network's own row ("argmax on the grid", the same peaks) this
    is the sub-grid ablation.
``dipole-fit`` (label ``"<network> + dipole fit"``)
    The peaks' vertex positions start a multi-dipole nonlinear least-squares
    fit (:func:`~napari_meg_unet.peers.field.refine_dipoles`: free
    orientations, moments solved linearly at each step, positions within 20 mm
    of the start, at most 30 residual evaluations) with the head model's
    forward at continuous positions
    (:class:`~napari_meg_unet.peers.field.DipoleField`, the conductor of the
    BEM dipole peer, :func:`~napari_meg_unet.peers.dipole.fit_conductor`) on
    the data whitened as the other peers'
    (:func:`~napari_meg_unet.peers.base.whitener`); the data fitted are the
    epoch's ``m`` dominant whitened components for ``m`` dipoles (for one
    dipole, the data of the dipole peer's ``window`` mode). The fit keeps the
    first ``k`` proposals (strongest first) of the lowest BIC (``select``), so
    it may drop the network's weaker proposals; the weight of the BIC's
    penalty (``bic_weight``, 0.5 or 1) is searched on the validation sets.
    With ``add`` (searched with the threshold) it may also add dipoles the
    network missed, up to ``max_sources``: the grid position explaining most of the
    residual starts one more dipole, kept while the BIC falls
    (:class:`~napari_meg_unet.peers.field.CandidateScan`). Amplitude: the
    fitted mean ``|moment|`` (A·m).
``dipole-fit-mne`` (label ``"<network> + dipole fit (MNE orientations)"``)
    The same fit with MNE's orientation rule (``orientations="mne"``: a
    dipole's weak third orientation is left out, as :func:`mne.fit_dipole`
    does). Less accurate with the exact forward, more robust to a
    conductor-model error (the module docstring of
    :mod:`napari_meg_unet.peers.field`); a separate row, not a searched
    choice, because the validation sets have no model error to choose it on.
``dipole-fit-mne-given`` (label ``"<network> + dipole fit (MNE orientations, n given)"``)
    The same fit told each event's true number of sources ``n``, as
    ``rap-music`` is: exactly ``n`` dipoles, started at the network's ``n``
    strongest peaks and, when it proposes fewer, where the residual scan
    starts the rest (``refine_dipoles(n_dipoles=n)``). The like-for-like
    comparison with RAP-MUSIC (n given); the rows above are not told ``n``.

They are peers (:class:`~napari_meg_unet.peers.Peer`), made per trained
network (:func:`make_hybrid`) and scored in ``bench accuracy`` when the preset
lists them (``hybrids``, ``--hybrids``; :mod:`.peers`). Their runtime per
event includes the network's inference. They live here, not in
:mod:`napari_meg_unet.peers`, because they need the networks (the training
and data-set pipelines).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice
from ..configs import HYBRIDS
from ..peers.base import EventEstimate, Peer, whitener
from ..peers.dipole import own_conductor
from ..peers.field import CandidateScan, DipoleField, refine_dipoles
from ..peers.peaks import centre_of_mass, propose_peaks


class NetworkMaps:
    """A network's window maps of sensor data on the head model ``hm``.

    Parameters
    ----------
    checkpoint : path-like
        The network (``best.pt``).
    hm : HeadModel
        The head model the network was trained for.
    info : mne.Info
        The data's channels (``hm``'s).
    device : str
        Torch device of the network.
    """

    def __init__(self, checkpoint, hm, info, *, device="cpu"):
        from ..configs import InverseConfig
        from ..dataset.building import _inverse_kernels
        from ..train.inference import load_model

        self.model, ckpt = load_model(checkpoint, mesh=hm, device=device)
        meta = ckpt["dataset_meta"]
        if meta.get("headmodel_fingerprint") != hm.fingerprint:
            raise ValueError("The network was not trained on this head model.")
        if list(info["ch_names"]) != hm.ch_names:
            raise ValueError("The data's channels are not the head model's (names and order).")
        self.inverse = InverseConfig(
            methods=tuple(meta["methods"]), lambda2=meta["lambda2"], loose=meta["loose"],
            depth=meta["depth"], nave=meta["nave"], hemi=meta["hemi"],
            normalisation=meta["normalisation"], precision=meta.get("precision", "float64"),
        )  # fmt: skip
        sfreq = meta.get("sfreq")
        if sfreq is not None and not np.isclose(float(sfreq), float(info["sfreq"])):
            raise ValueError(
                f"The data are sampled at {info['sfreq']:g} Hz but the network was trained at "
                f"{float(sfreq):g} Hz."
            )
        self.rows = np.asarray(hm.rows(meta["hemi"]))
        self.n_times = int(meta["n_times"])
        self.ch_names = list(info["ch_names"])
        self.kernels = _inverse_kernels(hm, self.inverse, verbose=False)

    def _stack(self, data):
        """The input images of ``data`` (n, n_channels, n_times), as the set builder makes them."""
        from ..inverse import make_input_stack

        if self.inverse.precision == "float32":
            from ..inverse.torch_stack import KernelStack

            stacker = KernelStack(self.kernels, self.inverse.methods, self.rows, self.ch_names,
                                  normalisation=self.inverse.normalisation)  # fmt: skip
            return stacker.stack_numpy(data, chunk=len(data))
        kernels = [self.kernels[m] for m in self.inverse.methods]
        return make_input_stack(kernels, data, rows=self.rows,
                                normalisation=self.inverse.normalisation)  # fmt: skip

    def _checked(self, data) -> np.ndarray:
        data = np.asarray(data, np.float64)
        if data.ndim != 3 or data.shape[1:] != (len(self.ch_names), self.n_times):
            raise ValueError(
                f"data must have shape (n, {len(self.ch_names)}, {self.n_times}) for this "
                f"network, got {data.shape}."
            )
        return data

    def window_maps(self, data, *, batch_size=16) -> np.ndarray:
        """Mean probability over the epoch ``(n, n_rows)`` of ``data`` (n, n_channels, n_times)."""
        from ..progress import plain
        from ..train.inference import iter_probabilities

        stack = self._stack(self._checked(data))
        probs = plain(iter_probabilities)(self.model, stack, batch_size=batch_size)
        return np.abs(probs).mean(axis=-1)

    def window_maps_and_centres(self, data, *, batch_size=16) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`window_maps` and the centre head's epoch mean ``(n, n_rows)`` of each event.

        Needs a network with a centre head (:mod:`napari_meg_unet.models.centre`).
        """
        import torch

        from ..models import probabilities

        stack = self._stack(self._checked(data))
        device = next(self.model.parameters()).device
        maps, centres = [], []
        with torch.inference_mode():
            for start in range(0, len(stack), batch_size):
                x = torch.from_numpy(np.asarray(stack[start : start + batch_size], np.float32))
                logits, centre = self.model(x.to(device), centre=True)
                maps.append(probabilities(logits).mean(dim=-1).cpu().numpy())
                centres.append(centre.float().cpu().numpy())
        return np.concatenate(maps), np.concatenate(centres)


#: The thresholds (fraction of the map's maximum) of the peak proposals searched.
THRESHOLDS = (0.2, 0.4, 0.6, 0.8)

#: The weights of the fits' BIC penalty searched (1: the textbook BIC; below: weaker
#: dipoles kept).
BIC_WEIGHTS = (0.5, 1.0)


class NetworkPeer(Peer):
    """Base of the hybrids: a network's peaks as proposals (see the module docstring).

    Parameters
    ----------
    checkpoint : path-like
        The trained network.
    network : str
        Its estimator label (e.g. ``"mesh U-Net"``).
    device : str
        Torch device of its inference.
    """

    family = "hybrid"
    output = "points"
    grid = {"threshold": THRESHOLDS}
    defaults = {"threshold": 0.6, "max_sources": 5}
    method = ""
    suffix = ""

    def __init__(self, checkpoint, network, *, device="cpu"):
        if checkpoint is None:
            raise ValueError(f"{self.method} needs a trained network's checkpoint.")
        self.checkpoint, self.network, self.device = checkpoint, network, device
        self.name = f"{network.split()[0]}-{self.method}"
        self.label = f"{network} + {self.suffix}"
        self.doc = __doc__
        self._cache = {}

    def describe(self) -> dict:
        return {**super().describe(), "network": self.network}

    def _shared(self, hm, info):
        """The parts every candidate shares (the network and its kernels; the field), cached."""
        key = (hm.fingerprint, tuple(info["ch_names"]))
        if key not in self._cache:
            self._cache = {key: self._make_shared(hm, info)}
        return self._cache[key]

    def _make_shared(self, hm, info) -> dict:
        return {"maps": NetworkMaps(self.checkpoint, hm, info, device=self.device)}

    def _prepare(self, hm, info, params, training):
        shared = self._shared(hm, info)
        hemi = shared["maps"].inverse.hemi
        return {**shared, "adjacency": hm.adjacency(hemi).tocsr(),
                "positions": np.asarray(hm.positions[shared["maps"].rows])}  # fmt: skip

    def estimate(self, state, data, *, n_sources=None):
        counts = None if n_sources is None else [n_sources]
        return self.estimate_batch(state, np.asarray(data)[np.newaxis], n_sources=counts)[0]

    def estimate_batch(self, state, data, *, n_sources=None):
        maps = state.parts["maps"].window_maps(data)
        return [self._points(state, amplitude, d) for amplitude, d in zip(maps, data, strict=True)]

    def _proposals(self, state, amplitude):
        p = state.params
        return propose_peaks(amplitude, state.parts["adjacency"], threshold=p["threshold"],
                             max_sources=int(p["max_sources"]))  # fmt: skip

    def _placed_peaks(self, state, amplitude, place) -> EventEstimate:
        """The proposals at the positions ``place(peaks)``, their amplitude the map's."""
        peaks = self._proposals(state, amplitude)
        if len(peaks) == 0:
            return EventEstimate.empty_points()
        return EventEstimate(positions=place(peaks), amplitudes=amplitude[peaks])

    def _points(self, state, amplitude, data) -> EventEstimate:
        raise NotImplementedError


class NetworkCentreOfMass(NetworkPeer):
    """The network's peaks moved to their neighbourhood's centre of mass."""

    method = "centre-of-mass"
    suffix = "centre of mass"

    def _points(self, state, amplitude, data):
        return self._placed_peaks(state, amplitude, lambda peaks: centre_of_mass(
            amplitude, peaks, state.parts["adjacency"], state.parts["positions"]))  # fmt: skip


class NetworkCentreHead(NetworkPeer):
    """The network's peaks placed by its own centre head."""

    method = "centre-head"
    suffix = "centre head"

    def unavailable(self, hm):
        from ..checkpoint import load_checkpoint

        if not load_checkpoint(self.checkpoint)["model_config"].get("centre_head", False):
            return "the network has no centre head (e.g. preset cpu-centre)"
        return None

    def _make_shared(self, hm, info):
        from ..models import MeshHierarchy
        from ..models.centre import ring_table

        shared = super()._make_shared(hm, info)
        mesh = MeshHierarchy.from_headmodel(hm, shared["maps"].inverse.hemi)
        return {**shared, "rings": ring_table(mesh)}

    def estimate_batch(self, state, data, *, n_sources=None):
        maps, centres = state.parts["maps"].window_maps_and_centres(data)
        return [self._placed(state, amplitude, centre)
                for amplitude, centre in zip(maps, centres, strict=True)]  # fmt: skip

    def _placed(self, state, amplitude, centre) -> EventEstimate:
        from ..models.centre import centre_positions

        return self._placed_peaks(state, amplitude, lambda peaks: centre_positions(
            centre, peaks, state.parts["positions"], state.parts["rings"]))  # fmt: skip


class NetworkDipoleFit(NetworkPeer):
    """The network's peaks refined by a multi-dipole least-squares fit."""

    method = "dipole-fit"
    suffix = "dipole fit"
    grid = {**NetworkPeer.grid, "add": (False, True), "bic_weight": BIC_WEIGHTS}
    defaults = {**NetworkPeer.defaults, "add": False, "max_shift_mm": 20.0, "max_nfev": 30,
                "orientations": "free", "bic_weight": 1.0}  # fmt: skip

    def unavailable(self, hm):
        if hm.bem is None:
            return "the head model has no conductor model (hm.bem)"
        return None

    def _make_shared(self, hm, info):
        return {**super()._make_shared(hm, info), "field": DipoleField(info, *own_conductor(hm))}

    def _scan(self, state):
        """The residual scan over the network's rows (made once per state)."""
        if "scan" not in state.parts:
            state.parts["scan"] = CandidateScan(state.parts["field"], whitener(state),
                                                state.parts["positions"])  # fmt: skip
        return state.parts["scan"]

    def _points(self, state, amplitude, data, n_sources=None):
        """The fit of the proposals: its own number of dipoles (BIC), or ``n_sources``."""
        peaks = self._proposals(state, amplitude)
        if len(peaks) == 0:
            return EventEstimate.empty_points()
        p = state.params
        if n_sources is None:
            adding = bool(p.get("add", False))
            count = dict(select=True, candidates=self._scan(state) if adding else None,
                         max_dipoles=int(p["max_sources"]) if adding else None,
                         bic_weight=float(p["bic_weight"]))  # fmt: skip
        else:
            count = dict(candidates=self._scan(state), n_dipoles=int(n_sources))
        fit = refine_dipoles(
            state.parts["field"], whitener(state), data, state.parts["positions"][peaks],
            max_shift_mm=float(p["max_shift_mm"]), max_nfev=int(p["max_nfev"]),
            orientations=p["orientations"], **count,
        )  # fmt: skip
        return EventEstimate(positions=fit.positions, amplitudes=fit.amplitudes,
                             moments=fit.moments)


class NetworkDipoleFitMNE(NetworkDipoleFit):
    """The dipole-fit hybrid whose dipoles keep MNE's orientation rule in the fit."""

    method = "dipole-fit-mne"
    suffix = "dipole fit (MNE orientations)"
    defaults = {**NetworkDipoleFit.defaults, "orientations": "mne"}


class NetworkDipoleFitGiven(NetworkDipoleFitMNE):
    """The MNE-orientation dipole-fit hybrid told each event's number of sources."""

    method = "dipole-fit-mne-given"
    suffix = "dipole fit (MNE orientations, n given)"
    needs_n_sources = True
    grid = dict(NetworkPeer.grid)

    def estimate_batch(self, state, data, *, n_sources=None):
        if n_sources is None:
            raise ValueError(f"{self.name} needs the true number of sources of each event.")
        maps = state.parts["maps"].window_maps(data)
        return [self._points(state, amplitude, d, n_sources=k)
                for amplitude, d, k in zip(maps, data, n_sources, strict=True)]  # fmt: skip


_HYBRID_CLASSES = {
    "centre-of-mass": NetworkCentreOfMass,
    "centre-head": NetworkCentreHead,
    "dipole-fit": NetworkDipoleFit,
    "dipole-fit-mne": NetworkDipoleFitMNE,
    "dipole-fit-mne-given": NetworkDipoleFitGiven,
}


def make_hybrid(name, checkpoint, network, *, device="cpu") -> NetworkPeer:
    """The hybrid ``name`` (:data:`~napari_meg_unet.configs.HYBRIDS`) of a trained network."""
    check_choice(name, "hybrid", HYBRIDS)
    return _HYBRID_CLASSES[name](checkpoint, network, device=device)
