"""Random draws of the torch core: rows, off-grid vertices, waveforms, SNRs, noise.

Every draw comes from one :class:`torch.Generator` per batch, seeded from the
batch's counter (:func:`batch_generator`), in a fixed order; uniform draws are
float64 and normal draws float32 whatever the compute dtype, so a float64 and
a float32 core see the same draws. The distributions are those of the numpy
path (:mod:`.layout`, :mod:`.waveforms`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..configs import (
    REALISTIC_DURATION,
    REALISTIC_FREQ,
    REALISTIC_REL_AMPLITUDE,
    THESIS_DURATION,
    THESIS_FREQ,
)

#: Tags mixed into the seed entropy of the different counter-based streams.
BATCH_TAG, SWEEP_TAG = 0x62617463, 0x73776570
#: Attempts at drawing one event's dipoles under ``min_separation_mm`` (as the numpy path).
_MAX_PLACEMENT_ATTEMPTS = 200


def seed_state(*entropy) -> int:
    """A 63-bit seed from integers (``np.random.SeedSequence``: distinct inputs, independent
    streams)."""
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def batch_generator(seed: int, index: int, rank: int, device) -> torch.Generator:
    """The generator of batch ``index`` on ``rank``: a function of the three numbers only."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed_state(seed, BATCH_TAG, index, rank))
    return gen


def _uniform(gen, shape, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=torch.float64, device=device)


def _randint(gen, high, shape, device) -> torch.Tensor:
    """Uniform integers in ``[0, high)`` (``high`` a number or a tensor of the shape)."""
    return torch.floor(_uniform(gen, shape, device) * high).long()


# --------------------------------------------------------------------------- where
def sweep_rows(n_candidates: int, first_event: int, n: int, *, seed: int, device) -> torch.Tensor:
    """Candidate indices of events ``first_event ..``: consecutive sweeps in shuffled orders.

    Event ``e`` belongs to sweep ``e // n_candidates``, whose order is a
    permutation seeded by the sweep's number, so every ``n_candidates``
    consecutive events of a stream (over all ranks) use every row once.
    """
    events = torch.arange(first_event, first_event + n, device=device)
    sweeps = events // n_candidates
    out = torch.empty(n, dtype=torch.long, device=device)
    for s in torch.unique(sweeps).tolist():
        gen = torch.Generator(device=device)
        gen.manual_seed(seed_state(seed, SWEEP_TAG, s))
        perm = torch.randperm(n_candidates, generator=gen, device=device)
        sel = sweeps == s
        out[sel] = perm[events[sel] % n_candidates]
    return out


def multi_rows(gen, n, *, n_dipoles, positions, min_sep_m, device):
    """``(index (n, hi) into the candidates, -1 padded; counts (n,))`` of multi-dipole events."""
    lo, hi = n_dipoles
    n_cand = len(positions)
    if hi > n_cand:
        raise ValueError(f"n_dipoles={hi} is more than the {n_cand} available rows.")
    counts = lo + _randint(gen, hi - lo + 1, (n,), device)
    slots = torch.arange(hi, device=device)
    if not min_sep_m:
        keys = _uniform(gen, (n, n_cand), device)
        picks = torch.argsort(keys, dim=1)[:, :hi]
        return torch.where(slots < counts[:, None], picks, -1), counts
    picks = torch.full((n, hi), -1, dtype=torch.long, device=device)
    todo = torch.arange(n, device=device)
    for _ in range(_MAX_PLACEMENT_ATTEMPTS):
        got, ok = _separated(gen, counts[todo], positions, min_sep_m, hi, device)
        picks[todo[ok]] = got[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            return picks, counts
    raise ValueError(
        f"Could not place {int(counts[todo[0]])} dipoles at least "
        f"min_separation_mm={min_sep_m * 1000:g} mm apart among the {n_cand} rows "
        f"({_MAX_PLACEMENT_ATTEMPTS} attempts); lower min_separation_mm or n_dipoles."
    )


def _separated(gen, counts, positions, sep_m, hi, device):
    """One greedy attempt per event: each dipole uniform among the rows not closer than sep."""
    n, n_cand = len(counts), len(positions)
    allowed = torch.ones((n, n_cand), dtype=torch.bool, device=device)
    picks = torch.full((n, hi), -1, dtype=torch.long, device=device)
    ok = torch.ones(n, dtype=torch.bool, device=device)
    for k in range(hi):
        need = counts > k
        free = allowed.sum(dim=1)
        ok &= ~need | (free > 0)
        u = _uniform(gen, (n,), device)
        # the j-th free row, j uniform in [0, free): same law as numpy's free[integers(len(free))]
        j = torch.floor(u * free.clamp_min(1)).long()
        rank = torch.cumsum(allowed.long(), dim=1)
        pick = torch.argmax(((rank == (j + 1)[:, None]) & allowed).to(torch.uint8), dim=1)
        take = need & ok
        picks[take, k] = pick[take]
        dist = torch.linalg.vector_norm(positions[None] - positions[pick][:, None], dim=-1)
        allowed &= ~(take[:, None] & (dist < sep_m))
        allowed[take, pick[take]] = False
    return picks, ok


def dense_pick(gen, rows, pool, device) -> torch.Tensor:
    """A dense vertex uniformly among those nearest to each row (``rows`` >= 0)."""
    count = pool["count"][rows]
    pick = _randint(gen, count.double(), rows.shape, device)
    return pool["order"][pool["start"][rows] + pick]


# --------------------------------------------------------------------------- when and how strong
def waveform_params(gen, timecourse, shape, *, n_times, sfreq, device) -> dict:
    """Onset, duration, frequency, phase and relative amplitude of ``shape`` sources (float64)."""
    if timecourse == "thesis":
        full = torch.full(shape, 1.0, dtype=torch.float64, device=device)
        return dict(
            onset=(full * ((n_times - THESIS_DURATION) // 2)).long(),
            duration=(full * THESIS_DURATION).long(),
            frequency=full * THESIS_FREQ, phase=full * 0.0, rel_amplitude=full,
        )  # fmt: skip
    f_hi = min(REALISTIC_FREQ[1], 0.4 * sfreq)
    frequency = REALISTIC_FREQ[0] + (f_hi - REALISTIC_FREQ[0]) * _uniform(gen, shape, device)
    phase = 2 * math.pi * _uniform(gen, shape, device)
    d_lo = max(3, math.ceil(REALISTIC_DURATION[0] * n_times))
    d_hi = max(d_lo, math.floor(REALISTIC_DURATION[1] * n_times))
    duration = d_lo + _randint(gen, d_hi - d_lo + 1, shape, device)
    onset = _randint(gen, (n_times - duration + 1).double(), shape, device)
    log_lo, log_hi = (math.log(a) for a in REALISTIC_REL_AMPLITUDE)
    rel_amplitude = torch.exp(log_lo + (log_hi - log_lo) * _uniform(gen, shape, device))
    return dict(onset=onset, duration=duration, frequency=frequency, phase=phase,
                rel_amplitude=rel_amplitude)  # fmt: skip


def unit_waveforms(params, timecourse, *, n_times, sfreq, dtype) -> torch.Tensor:
    """Unit-peak waveforms (..., n_times) in ``dtype`` (the numpy path's formula)."""
    onset, duration = params["onset"], params["duration"]
    device = onset.device
    tau = torch.arange(n_times, device=device, dtype=dtype) - onset[..., None].to(dtype)
    active = (tau >= 0) & (tau < duration[..., None].to(dtype))
    freq = params["frequency"].to(dtype)[..., None]
    phase = params["phase"].to(dtype)[..., None]
    unit = torch.sin(2 * math.pi * freq * tau / sfreq + phase)
    if timecourse != "thesis":  # Hann window of duration + 2 points without its zero ends
        unit = unit * torch.sin(math.pi * (tau + 1) / (duration[..., None].to(dtype) + 1)) ** 2
    unit = torch.where(active, unit, torch.zeros((), dtype=dtype, device=device))
    peak = unit.abs().amax(dim=-1, keepdim=True)
    return unit / torch.where(peak > 0, peak, torch.ones_like(peak))


def event_snr(gen, snr, n, device) -> torch.Tensor:
    """Each event's SNR: fixed, or log-uniform in ``snr`` = (lo, hi) (float64)."""
    lo, hi = snr
    if lo == hi:
        return torch.full((n,), float(lo), dtype=torch.float64, device=device)
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * _uniform(gen, (n,), device))


def noise_draw(gen, n_rows, q, device) -> torch.Tensor:
    """Standard normal draws (n_rows, q), float32."""
    return torch.randn((n_rows, q), generator=gen, dtype=torch.float32, device=device)
