"""The float32 torch core: simulate -> inverse -> input stack, one batch at a time.

:class:`TorchCore` is built once from a head model, a
:class:`~napari_meg_unet.configs.SimulationConfig` and an
:class:`~napari_meg_unet.configs.InverseConfig` (the imaging kernels come from
the float64 reference code, :func:`~napari_meg_unet.inverse.compute_kernel`,
computed once). :meth:`TorchCore.draw` then makes a batch of events on its
device: the sources (sweep / multi / extended, off-grid through the dense
sources), the waveform presets, the exact whitened SNR per event, the signal
``gain @ time courses`` (optionally from an alternative "true" forward model:
model-error augmentation, :class:`~.torch_setup.TrueModel`), coloured noise
with the head model's covariance, the imaging kernels as one batched matrix
product and the normalisation, returning the network inputs, targets, true
positions and amplitudes.

The training stream (:mod:`napari_meg_unet.dataset.streaming`) calls it per
batch, and ``simulate``/``inverse``/``dataset`` use it when asked for
``precision="float32"``. The randomness of a batch is a function of
``(seed, batch index, rank)`` only (:func:`~.torch_draw.batch_generator`).
The float64 numpy path stays the reference (MNE parity); the core can also
compute in float64 (``dtype=torch.float64``) from the same draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..configs import InverseConfig, SimulationConfig
from ..inverse.torch_stack import KernelStack
from . import torch_draw as D
from .torch_setup import TrueModel, host_tables, true_model

#: Events per block of a float32 simulation or example set made on the host.
DEFAULT_BLOCK = 256


@dataclass(eq=False)
class CoreBatch:
    """One batch of the core: the network's data and the ground truth behind it.

    Attributes
    ----------
    inputs : Tensor, (n, n_methods, n_rows, n_times)
        Normalised inverse images (None when not asked for).
    targets : Tensor of uint8, (n, n_rows, n_times)
        1 where a simulated source is active.
    true_positions : Tensor, (n, k_max, 3)
        Source positions (m), NaN-padded.
    amplitudes : Tensor, (n, n_rows, n_times)
        Source amplitudes (A·m) on the image rows.
    data : Tensor, (n, n_times, n_channels)
        Sensor data (signal + noise); ``data.transpose(1, 2)`` is (events, channels, times).
    layout : dict of Tensor
        What was drawn: ``row`` (n, k_max, -1 padded), ``key`` (field table
        index), ``model`` (n,), waveform parameters, ``snr``, ``scale`` and
        ``timecourse`` (n, k_max, n_times, A·m).
    """

    inputs: torch.Tensor | None
    targets: torch.Tensor
    true_positions: torch.Tensor
    amplitudes: torch.Tensor
    data: torch.Tensor
    layout: dict


class TorchCore:
    """Simulate -> inverse -> input stack on a torch device (see the module docstring).

    Parameters
    ----------
    hm : HeadModel
        The nominal head model (gain, noise covariance, inverse kernels).
    simulation : SimulationConfig
        How events are drawn (``n_events``/``n_repeats``/``seed`` are ignored:
        the caller says how many events and which counters).
    inverse : InverseConfig
        The images (methods, lambda2, loose, depth, hemi, nave, normalisation);
        ``hemi``/``nave`` None take the simulation's.
    device : str | torch.device
        Where the batches are made.
    dtype : torch.dtype
        Compute dtype (float32; float64 for precision checks).
    model_error : sequence of HeadModel | TrueModel
        Alternative forward models; when given, each event's signal comes
        from one of them drawn uniformly (include ``hm`` to keep nominal
        events). The kernels stay the nominal ones.
    kernels : dict | None
        ``{method: InverseKernel}`` already computed (else computed here).
    dense : DenseSources | None
        Off-grid sources (else made with ``make_dense_sources`` when needed).
    inputs : bool
        Make input stacks (False: only sensor data and truth, no kernels).
    """

    def __init__(self, hm, simulation: SimulationConfig, inverse: InverseConfig, *,
                 device="cpu", dtype=torch.float32, model_error=(), kernels=None, dense=None,
                 inputs=True, verbose=None):  # fmt: skip
        from ..device import resolve_device

        verbose = "WARNING" if verbose is None else verbose
        inverse = inverse.replace(
            hemi=simulation.hemi if inverse.hemi is None else inverse.hemi,
            nave=simulation.nave if inverse.nave is None else inverse.nave,
        )
        self.simulation, self.inverse, self.hm = simulation, inverse, hm
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        if self.device.type == "mps":
            raise ValueError(
                "The torch core draws in float64, which Apple MPS lacks; make the batches on "
                "device='cpu' (the training stream does so on MPS and moves them)."
            )
        self.dtype = dtype
        if simulation.off_grid and dense is None:
            dense = _dense_sources(hm, simulation, verbose)
        self.dense = dense
        self.true_models = [true_model(m, hm, dense=dense, verbose=verbose) for m in model_error]
        self.host = host_tables(hm, simulation, inverse, dense=dense, true_models=self.true_models)
        self.kernels, self.stacker = None, None
        if inputs:
            if kernels is None:
                kernels = compute_kernels(hm, inverse, verbose=verbose)
            self.kernels = kernels
            self.stacker = KernelStack(
                kernels, inverse.methods, self.host.image_rows, hm.ch_names,
                normalisation=inverse.normalisation, device=self.device, dtype=dtype,
            )  # fmt: skip
        self._to_device()

    # ------------------------------------------------------------------ setup
    def _to_device(self) -> None:
        h, dev, dt = self.host, self.device, self.dtype

        def t(a, dtype=dt):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=dev)

        self.candidates = t(h.candidates, torch.long)
        self.image_index = t(h.image_index, torch.long)
        self.fields, self.w_fields = t(h.fields), t(h.w_fields)
        self.key_positions = t(h.key_positions, torch.float64)
        self.cand_positions = t(self.hm.positions[h.candidates], torch.float64)
        self.members = t(h.members, torch.long)
        self.pool = None if h.pool is None else {k: t(v, torch.long) for k, v in h.pool.items()}
        self.colour, self.colour_gather = None, None
        if h.colour is not None:
            self.colour = t(h.colour)
            self.colour_gather = _monomial(h.colour, dev, dt)

    @property
    def n_times(self) -> int:
        return self.simulation.resolved_n_times

    @property
    def n_rows(self) -> int:
        return len(self.host.image_rows)

    @property
    def k_max(self) -> int:
        return self.simulation.n_dipoles[1] if self.simulation.design == "multi" else 1

    @property
    def n_models(self) -> int:
        return self.fields.shape[0]

    # ------------------------------------------------------------------ draw
    def draw(self, n: int, *, seed: int, index: int, rank: int = 0, first_event: int | None = None,
             with_inputs: bool = True) -> CoreBatch:  # fmt: skip
        """Make ``n`` events from the counter ``(seed, index, rank)``.

        ``first_event`` (default ``index * n``) is the stream position of the
        first event, which places a sweep's events in their sweeps.
        """
        gen = D.batch_generator(seed, index, rank, self.device)
        first = index * n if first_event is None else first_event
        layout = self._draw_layout(gen, n, seed=seed, first_event=first)
        data, layout = self._signal_and_noise(gen, layout)
        inputs = None
        if with_inputs and self.stacker is not None:
            inputs = self.stack(data.transpose(1, 2))
        targets, amplitudes = self._truth(layout)
        return CoreBatch(inputs=inputs, targets=targets, true_positions=self._positions(layout),
                         amplitudes=amplitudes, data=data, layout=layout)  # fmt: skip

    def _draw_layout(self, gen, n, *, seed, first_event) -> dict:
        sim, dev = self.simulation, self.device
        n_cand = len(self.candidates)
        if sim.design == "multi":
            idx, counts = D.multi_rows(
                gen, n, n_dipoles=sim.n_dipoles, positions=self.cand_positions,
                min_sep_m=(sim.min_separation_mm or 0.0) / 1000.0, device=dev,
            )  # fmt: skip
        else:
            if sim.design == "extended" and sim.n_events:
                idx = D._randint(gen, n_cand, (n,), dev)
            else:
                idx = D.sweep_rows(n_cand, first_event, n, seed=seed, device=dev)
            idx, counts = idx[:, None], torch.ones(n, dtype=torch.long, device=dev)
        valid = idx >= 0
        row = torch.where(valid, self.candidates[idx.clamp_min(0)], -1)
        key = row.clamp_min(0)
        if self.pool is not None:
            key = D.dense_pick(gen, key, self.pool, dev)
        model = torch.zeros(n, dtype=torch.long, device=dev)
        if self.true_models:
            model = 1 + D._randint(gen, len(self.true_models), (n,), dev)
        params = D.waveform_params(gen, sim.timecourse, row.shape, n_times=self.n_times,
                                   sfreq=sim.resolved_sfreq, device=dev)  # fmt: skip
        snr = D.event_snr(gen, sim.snr, n, dev)
        return dict(row=row, key=key, valid=valid, counts=counts, model=model, snr=snr, **params)

    def _signal_and_noise(self, gen, layout):
        sim, dt = self.simulation, self.dtype
        unit = D.unit_waveforms(layout, sim.timecourse, n_times=self.n_times,
                                sfreq=sim.resolved_sfreq, dtype=dt)  # fmt: skip
        valid = layout["valid"]
        amp = unit * (layout["rel_amplitude"].to(dt) * valid)[..., None]  # (n, k, T)
        amp_t = amp.transpose(1, 2)  # (n, T, k)
        model, key = layout["model"][:, None], layout["key"]
        scale = self._scale(amp_t, self.w_fields[model, key], layout)
        signal = torch.bmm(amp_t, self.fields[model, key]) * scale.to(dt)[:, None, None]
        if self.colour is not None:
            n = amp.shape[0]
            z = D.noise_draw(gen, n * self.n_times, self.colour.shape[0], self.device).to(dt)
            signal += self._colour(z).reshape(signal.shape)
        layout["scale"] = scale
        layout["timecourse"] = amp * scale.to(dt)[:, None, None]
        return signal, layout

    def _colour(self, z):
        if self.colour_gather is not None:
            src, weight = self.colour_gather
            return z[:, src] * weight
        return z @ self.colour

    def _scale(self, amp_t, w_fields, layout) -> torch.Tensor:
        """Per-event factor giving the amplitudes exactly the target whitened SNR (float64)."""
        w_sig = torch.bmm(amp_t, w_fields)
        power = (w_sig * w_sig).sum(dim=-1).double()  # (n, T)
        valid = layout["valid"]
        big = torch.iinfo(torch.long).max
        start = torch.where(valid, layout["onset"], big).amin(dim=1)
        stop = torch.where(valid, layout["onset"] + layout["duration"], -1).amax(dim=1)
        times = torch.arange(self.n_times, device=self.device)
        window = (times >= start[:, None]) & (times < stop[:, None])
        rms = torch.sqrt((power * window).sum(dim=1) / (window.sum(dim=1) * self.host.rank))
        bad = ~(torch.isfinite(rms) & (rms > 0))
        if bool(bad.any()):
            e = int(torch.nonzero(bad)[0])
            rows = layout["row"][e][layout["valid"][e]].tolist()
            raise ValueError(
                f"Event {e} of the batch (rows {rows}) has no whitened signal: its sources are "
                "invisible to the sensors, so no amplitude reaches the requested snr."
            )
        return layout["snr"] / math.sqrt(self.simulation.nave) / rms

    # ------------------------------------------------------------------ truth
    def _truth(self, layout):
        """Targets (uint8) and amplitudes on the image rows, from the sources' members."""
        n, dev = layout["row"].shape[0], self.device
        tc = layout["timecourse"]  # (n, k, T)
        members = self.members[layout["row"].clamp_min(0)]  # (n, k, m)
        members = torch.where(layout["valid"][..., None], members, -1)
        img = torch.where(members >= 0, self.image_index[members.clamp_min(0)], -1)
        ok = img >= 0
        ev = torch.arange(n, device=dev)[:, None, None].expand_as(img)[ok]
        values = tc[:, :, None, :].expand(*img.shape, tc.shape[-1])[ok]
        amplitudes = torch.zeros((n, self.n_rows, self.n_times), dtype=self.dtype, device=dev)
        amplitudes.index_put_((ev, img[ok]), values, accumulate=True)
        return (amplitudes != 0).to(torch.uint8), amplitudes

    def _positions(self, layout) -> torch.Tensor:
        pos = self.key_positions[layout["key"]]
        return torch.where(layout["valid"][..., None], pos, torch.nan)

    # ------------------------------------------------------------------ inverse
    def stack(self, data) -> torch.Tensor:
        """Input stacks (n, n_methods, n_rows, n_times) of data (n, n_channels, n_times).

        One product with every distinct kernel on the image rows
        (:class:`~napari_meg_unet.inverse.torch_stack.KernelStack`), then the
        per-location magnitude of 3-component kernels and the normalisation.
        """
        return self.stacker.stack(data)


def compute_kernels(hm, inverse: InverseConfig, *, verbose=None) -> dict:
    """``{method: InverseKernel}`` of ``inverse.methods`` (plus MNE when the family needs it)."""
    from ..inverse import compute_kernel, make_inverse

    inv = make_inverse(hm, loose=inverse.loose, depth=inverse.depth, verbose=verbose)
    methods = list(inverse.methods)
    if any(m in ("dSPM", "sLORETA") for m in methods) and "MNE" not in methods:
        methods.append("MNE")
    nave = 1 if inverse.nave is None else inverse.nave
    return {m: compute_kernel(inv, method=m, lambda2=inverse.lambda2, nave=nave,
                              fingerprint=hm.fingerprint, verbose=verbose)
            for m in methods}  # fmt: skip


def _dense_sources(hm, simulation, verbose):
    from ..headmodel import _is_template, make_dense_sources

    spacing = simulation.dense_spacing
    if spacing is None and simulation.design == "sweep" and _is_template(hm):
        from .core import SWEEP_DENSE_SPACING

        spacing = SWEEP_DENSE_SPACING
    return make_dense_sources(hm, spacing=spacing, verbose=verbose)


def _monomial(colour: np.ndarray, device, dtype):
    """``(source column, weight)`` per channel when each channel has at most one nonzero
    factor (a diagonal covariance): the colouring is then a gather, else None."""
    nonzero = colour != 0
    if (nonzero.sum(axis=0) > 1).any():
        return None
    src = np.argmax(nonzero, axis=0)
    weight = colour[src, np.arange(colour.shape[1])]
    return (torch.as_tensor(src, dtype=torch.long, device=device),
            torch.as_tensor(weight, dtype=dtype, device=device))  # fmt: skip


__all__ = ["DEFAULT_BLOCK", "CoreBatch", "TorchCore", "TrueModel", "compute_kernels", "true_model"]
