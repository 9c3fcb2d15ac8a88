"""The sensor network for several sources: up to ``n_sources`` positions, and which are there.

The one-source network (:mod:`.sensor_dipole`) reads the epoch's dominant
whitened pattern. Several sources span several patterns, so this one reads
the first ``n_sources`` of them (``u_k`` of ``W X = U S V^T``, each sign-fixed,
and their ``log s_k``, :func:`~.sensor_dipole.epoch_pattern`) and answers
with ``n_sources`` *slots*: a position each (head coordinates, as the
one-source network's) and a logit that the slot holds a source.

Training is set prediction (as in detection transformers): on each event the
slots are assigned to the true sources by the optimal assignment of their
distances (:func:`scipy.optimize.linear_sum_assignment`); the loss is the
mean distance of the assigned slots to their sources (in units of
:data:`~.sensor_dipole.SCALE`) plus the binary cross-entropy of every slot's
logit against "assigned". The slots therefore carry no fixed meaning; the
number of sources is the number of slots whose probability passes 0.5. Its
validation distance, the one the training keeps the best state of, is the
protocol's: each event's ``n`` most probable slots against its ``n`` sources,
optimally matched.

Training, checkpoints and the training stream are the one-source network's
(:func:`~.sensor_dipole.iter_train_sensor_dipole`,
:func:`~.sensor_dipole.save_sensor_dipole_net`); a ``multi`` simulation makes
this network (:func:`~.sensor_dipole.iter_make_sensor_dipole_net`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .sensor_dipole import HIDDEN, SCALE, SensorDipoleNet, epoch_pattern


class SensorSourcesNet(SensorDipoleNet):
    """Whitened epoch patterns -> ``n_sources`` slots: positions (m) and logits.

    Parameters are those of :class:`~.sensor_dipole.SensorDipoleNet`, plus
    ``n_sources`` (at least 2), the most sources an event may hold.
    """

    def __init__(self, whitener, centre, ch_names, hidden=HIDDEN, trained_on=None, *,
                 n_sources=5):  # fmt: skip
        if int(n_sources) < 2:
            raise ValueError(f"n_sources must be at least 2 (one source: SensorDipoleNet), "
                             f"got {n_sources}.")  # fmt: skip
        # read by the base class while it builds the layers
        self.n_sources = int(n_sources)
        super().__init__(whitener, centre, ch_names, hidden=hidden, trained_on=trained_on)

    def _out_width(self) -> int:
        return 4 * self.n_sources

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot positions ``(n, n_sources, 3)`` (m) and logits ``(n, n_sources)``."""
        out = self.mlp(features).view(len(features), self.n_sources, 4)
        return out[..., :3] * SCALE + self.centre, out[..., 3]

    def loss(self, features, true_positions) -> torch.Tensor:
        """Assigned slots' mean distance (in ``SCALE``) plus the logits' cross-entropy."""
        positions, logits = self(features)
        event, source, slot = assignment(positions.detach(), true_positions)
        distance = (positions[event, slot] - true_positions[event, source]).norm(dim=1)
        present = torch.zeros_like(logits)
        present[event, slot] = 1.0
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, present)
        return distance.mean() / SCALE + bce

    @torch.no_grad()
    def distance_mm(self, features, true_positions) -> float:
        """Mean over events of the ``n`` most probable slots' matched distance (mm)."""
        positions, logits = self(features)
        event, source, slot = assignment(positions, true_positions, logits=logits)
        distance = (positions[event, slot] - true_positions[event, source]).norm(dim=1)
        per_event = torch.zeros(len(positions), device=distance.device)
        per_event.index_add_(0, event, distance)
        counts = torch.bincount(event, minlength=len(positions)).clamp_min(1)
        return float((per_event / counts).mean()) * 1000.0

    @torch.no_grad()
    def predict_slots(self, data) -> tuple[np.ndarray, np.ndarray]:
        """Slot positions ``(n, n_sources, 3)`` (m) and probabilities, most probable first."""
        positions, logits = self(self.features(self._checked_events(data)))
        order = torch.argsort(logits, dim=1, descending=True)
        positions = positions.gather(1, order[..., None].expand(-1, -1, 3))
        return positions.numpy(), torch.sigmoid(logits.gather(1, order)).numpy()

    @torch.no_grad()
    def predict(self, data) -> tuple[np.ndarray, np.ndarray]:
        """The most probable slot's positions ``(n, 3)`` and the strengths ``s1`` ``(n,)``."""
        positions, _ = self.predict_slots(data)
        features = epoch_pattern(self.whitener, self._checked_events(data))
        return positions[:, 0], np.exp(features[:, -1].numpy())


#: The most slots :func:`assignment` assigns by trying every permutation (6! = 720).
MAX_PERMUTED_SLOTS = 6
_PERMUTATIONS: dict = {}


def _permuted_assignment(positions, true_positions):
    """:func:`assignment` (no logits) as the best of the ``m!`` slot permutations."""
    import itertools

    n, m, _ = positions.shape
    k = true_positions.shape[1]
    if not bool(torch.isfinite(positions).all()):
        raise ValueError("The network's slot positions are not finite (training diverged).")
    device = positions.device
    key = (m, k, str(device))
    if key not in _PERMUTATIONS:
        perms = torch.tensor(list(itertools.permutations(range(m))), device=device)
        _PERMUTATIONS[key] = perms[:, :k]  # the slots of sources 0..k-1 in each permutation
    perms = _PERMUTATIONS[key]
    truth = true_positions.detach().double()
    present = ~torch.isnan(truth[..., 0])  # (n, k)
    cost = torch.linalg.vector_norm(truth[:, :, None] - positions.detach().double()[:, None],
                                    dim=-1)  # (n, k, m)  # fmt: skip
    cost = torch.where(present[..., None], cost, 0.0)
    sources = torch.arange(k, device=device)
    slot = perms[cost[:, sources[None, :], perms].sum(dim=-1).argmin(dim=1)]  # (n, k)
    event = torch.arange(n, device=device)[:, None].expand(n, k)
    return event[present], sources[None, :].expand(n, k)[present], slot[present]


def kept_slots(positions, probabilities, threshold=0.5) -> np.ndarray:
    """One event's sources: its slots (most probable first) of probability >= ``threshold``.

    At least the most probable slot: the network is run on events that hold a source.
    """
    return np.asarray(positions)[:max(1, int(np.sum(np.asarray(probabilities) >= threshold)))]


def assignment(positions, true_positions, *, logits=None):
    """Each event's optimal assignment of slots to its true sources, by distance.

    ``positions`` ``(n, m, 3)``, ``true_positions`` ``(n, k, 3)`` NaN-padded;
    with ``logits`` ``(n, m)`` only each event's ``k_i`` most probable slots
    take part (``k_i`` its number of sources). Returns the index tensors
    ``(event, source, slot)`` of the assigned pairs.

    Without ``logits`` and with at most :data:`MAX_PERMUTED_SLOTS` slots, the
    assignment is the best of the slots' permutations, on the positions'
    device for all events at once (:func:`linear_sum_assignment` per event on
    the host otherwise: the same pairs, tested); a training step then waits
    for no host loop.
    """
    m, k = positions.shape[1], true_positions.shape[1]
    if logits is None and k <= m <= MAX_PERMUTED_SLOTS:
        return _permuted_assignment(positions, true_positions)
    return _host_assignment(positions, true_positions, logits)


def _host_assignment(positions, true_positions, logits):
    """:func:`assignment` by :func:`linear_sum_assignment`, one event at a time."""
    pos = positions.detach().cpu().numpy()
    truth = true_positions.detach().cpu().numpy()
    ranks = None if logits is None else np.argsort(-logits.detach().cpu().numpy(), axis=1)
    events, sources, slots = [], [], []
    for i in range(len(pos)):
        present = np.flatnonzero(~np.isnan(truth[i, :, 0]))
        if len(present) > pos.shape[1]:
            raise ValueError(f"event {i} has {len(present)} sources, more than the network's "
                             f"{pos.shape[1]} slots.")  # fmt: skip
        candidates = np.arange(pos.shape[1]) if ranks is None else ranks[i, :len(present)]
        cost = np.linalg.norm(truth[i][present, None] - pos[i][None, candidates], axis=-1)
        rows, cols = linear_sum_assignment(cost)
        events.append(np.full(len(rows), i))
        sources.append(present[rows])
        slots.append(candidates[cols])
    return tuple(torch.from_numpy(np.concatenate(a)).long().to(positions.device)
                 for a in (events, sources, slots))  # fmt: skip
