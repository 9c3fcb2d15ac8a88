"""Multi-resolution hierarchy of a triangulated source space, for mesh-aware networks.

A :class:`MeshHierarchy` holds, for every resolution level, the vertex graph
(undirected edges of the triangulation) and the maps between consecutive
levels: which fine vertices each coarse vertex pools over, and from which
coarse parents (with which weights) each fine vertex is interpolated back.

Two coarsening rules exist:

``"subdivision"``
    Icosahedral (``ico``) and octahedral (``oct``) source spaces are regular
    mid-point subdivisions: every level-``n`` mesh is the level ``n - 1`` mesh
    with one new vertex on each edge. The coarse vertices are recovered from
    the *topology* alone: the vertices whose degree is not 6 (the 12 ico / 6 oct
    corners) are coarse, and the vertex opposite a coarse vertex across a new
    (degree-6) vertex is coarse as well. The result is verified (no two coarse
    vertices adjacent, every new vertex has two coarse parents, the coarse
    triangles number a quarter of the fine ones) before it is accepted. On
    fsaverage the coarse vertices found this way are the first ``10 * 4**(n-1) + 2``
    used vertices (``hm.vertno[h][:n_coarse]``); :attr:`MeshHierarchy.prefix`
    records whether that held. Pooling takes each coarse vertex's fine 1-ring
    (itself and its fine neighbours); unpooling copies coarse vertices and
    averages the two parents of every new vertex.
``"cluster"``
    Any other triangulation (irregular meshes, an ``ico`` source space whose
    vertices were snapped onto an individual surface so that the subdivision
    check fails, or levels below the icosahedron): a quarter of the vertices
    are chosen by farthest-point sampling of the positions and every vertex
    joins the cluster of its nearest (shortest path along mesh edges) chosen
    vertex. Pooling takes the cluster members; unpooling copies the cluster
    value back to its members; clusters are adjacent when a mesh edge joins them.

Vertex order at the finest level is the image row order ``HeadModel.rows(hemi)``;
coarse levels keep the increasing order of their representative fine vertices
(so left-hemisphere vertices come first for ``hemi="both"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from ..fingerprint import array_fingerprint

COARSENING_METHODS = ("auto", "subdivision", "cluster")


# ---------------------------------------------------------------------------- graph helpers
def _edges_from_triangles(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges ``(i, j)`` with ``i < j`` of a triangulation."""
    tris = np.asarray(triangles, np.int64)
    pairs = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]], axis=0)
    return _unique_edges(pairs)


def _unique_edges(pairs: np.ndarray) -> np.ndarray:
    pairs = np.sort(np.asarray(pairs, np.int64).reshape(-1, 2), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    return np.unique(pairs, axis=0)


def _neighbour_sets(edges: np.ndarray, n_vertices: int) -> list[set]:
    nbrs = [set() for _ in range(n_vertices)]
    for i, j in edges.tolist():
        nbrs[i].add(j)
        nbrs[j].add(i)
    return nbrs


def _csr_from_lists(lists, weights=None) -> tuple[np.ndarray, ...]:
    """Flatten a list of index lists (and optional weight lists) into CSR arrays."""
    indptr = np.zeros(len(lists) + 1, np.int64)
    indptr[1:] = np.cumsum([len(x) for x in lists])
    indices = np.fromiter((i for x in lists for i in x), np.int64, count=int(indptr[-1]))
    if weights is None:
        return indptr, indices
    values = np.fromiter((w for x in weights for w in x), np.float64, count=int(indptr[-1]))
    return indptr, indices, values


# ------------------------------------------------------------------------------ coarsening
@dataclass(frozen=True)
class _Coarsening:
    """One fine -> coarse step (indices local to the fine level)."""

    method: str
    coarse: np.ndarray  # (n_coarse,) fine indices of the coarse vertices, increasing
    edges: np.ndarray  # (E, 2) coarse-level edges
    triangles: np.ndarray | None  # coarse triangulation (subdivision only)
    pool: tuple  # CSR (indptr, indices): fine members of each coarse vertex
    unpool: tuple  # CSR (indptr, indices, weights): coarse parents of each fine vertex


def _subdivision_coarsening(triangles: np.ndarray, n_vertices: int) -> _Coarsening | None:
    """Undo one mid-point subdivision of a closed triangulation, or ``None`` if it is not one."""
    triangles = np.asarray(triangles, np.int64)
    edges = _edges_from_triangles(triangles)
    nbrs = _neighbour_sets(edges, n_vertices)
    degree = np.array([len(s) for s in nbrs])
    seeds = np.flatnonzero(degree != 6)
    if len(seeds) == 0 or len(triangles) % 4:
        return None
    is_coarse = np.zeros(n_vertices, bool)
    is_coarse[seeds] = True
    queue = list(seeds.tolist())
    while queue:
        c = queue.pop()
        for m in nbrs[c]:
            # every fine neighbour of a coarse vertex is a degree-6 edge mid-point
            if is_coarse[m] or degree[m] != 6:
                return None
            common = nbrs[c] & nbrs[m]
            if len(common) != 2:
                return None
            near = {c} | common
            for a in common:
                near |= nbrs[a] & nbrs[m]
            far = nbrs[m] - near
            if len(far) != 1:
                return None
            (o,) = far
            if not is_coarse[o]:
                is_coarse[o] = True
                queue.append(o)
    coarse = np.flatnonzero(is_coarse)
    rank = np.full(n_vertices, -1, np.int64)
    rank[coarse] = np.arange(len(coarse))
    parents = {m: sorted(s for s in nbrs[m] if is_coarse[s]) for m in np.flatnonzero(~is_coarse)}
    if any(len(p) != 2 for p in parents.values()):
        return None
    # corner triangles (one coarse corner c, mid-points of c-p1 and c-p2) give the coarse
    # triangle (c, p1, p2) with the same orientation
    n_corner = is_coarse[triangles].sum(axis=1)
    if np.any(n_corner > 1):
        return None
    corner = triangles[n_corner == 1]
    shift = np.argmax(is_coarse[corner], axis=1)
    corner = np.stack([np.roll(t, -s) for t, s in zip(corner, shift, strict=True)])

    def other_parent(mid, c):
        p = parents[mid]
        return p[1] if p[0] == c else p[0]

    coarse_tris = np.array(
        [[c, other_parent(m1, c), other_parent(m2, c)] for c, m1, m2 in corner.tolist()], np.int64
    )
    coarse_tris = rank[coarse_tris]
    # canonical rotation (smallest index first, orientation kept) to count each triangle once
    first = np.argmin(coarse_tris, axis=1)
    coarse_tris = np.stack([np.roll(t, -s) for t, s in zip(coarse_tris, first, strict=True)])
    unique_tris, counts = np.unique(coarse_tris, axis=0, return_counts=True)
    if len(unique_tris) * 4 != len(triangles) or np.any(counts != 3):
        return None
    pool = _csr_from_lists([[c, *sorted(nbrs[c])] for c in coarse.tolist()])
    unpool_idx, unpool_w = [], []
    for m in range(n_vertices):
        if is_coarse[m]:
            unpool_idx.append([rank[m]])
            unpool_w.append([1.0])
        else:
            unpool_idx.append(rank[parents[m]].tolist())
            unpool_w.append([0.5, 0.5])
    return _Coarsening(
        method="subdivision",
        coarse=coarse,
        edges=_edges_from_triangles(unique_tris),
        triangles=unique_tris,
        pool=pool,
        unpool=_csr_from_lists(unpool_idx, unpool_w),
    )


def _farthest_point_sampling(positions: np.ndarray, n_samples: int) -> np.ndarray:
    """Greedy farthest-point sample, started at the vertex farthest from the centroid."""
    positions = np.asarray(positions, float)
    start = int(np.argmax(np.linalg.norm(positions - positions.mean(axis=0), axis=1)))
    chosen = [start]
    dist = np.linalg.norm(positions - positions[start], axis=1)
    for _ in range(n_samples - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(positions - positions[nxt], axis=1))
    return np.sort(np.asarray(chosen, np.int64))


def _cluster_coarsening(
    edges: np.ndarray, positions: np.ndarray, n_vertices: int, *, factor: int = 4
) -> _Coarsening:
    """Coarsen by farthest-point sampling and nearest-along-the-mesh clustering."""
    n_coarse = max(1, int(np.ceil(n_vertices / factor)))
    coarse = _farthest_point_sampling(positions, n_coarse)
    lengths = np.linalg.norm(positions[edges[:, 0]] - positions[edges[:, 1]], axis=1)
    # a tiny floor keeps coincident vertices connected (zero weights mean "no edge" in csgraph)
    lengths = np.maximum(lengths, 1e-12)
    graph = sparse.coo_matrix(
        (lengths, (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices)
    ).tocsr()
    dist, _, sources = dijkstra(
        graph, directed=False, indices=coarse, min_only=True, return_predecessors=True
    )
    unreached = ~np.isfinite(dist)
    if unreached.any():  # vertices in components without a sample: nearest in space
        _, nearest = cKDTree(positions[coarse]).query(positions[unreached])
        sources[unreached] = coarse[nearest]
    rank = np.full(n_vertices, -1, np.int64)
    rank[coarse] = np.arange(n_coarse)
    cluster = rank[sources]
    members = [[] for _ in range(n_coarse)]
    for v, c in enumerate(cluster.tolist()):
        members[c].append(v)
    # the centre first, as in the subdivision pooling ring
    members = [[int(coarse[c])] + [v for v in m if v != coarse[c]] for c, m in enumerate(members)]
    return _Coarsening(
        method="cluster",
        coarse=coarse,
        edges=_unique_edges(cluster[edges]),
        triangles=None,
        pool=_csr_from_lists(members),
        unpool=_csr_from_lists([[c] for c in cluster.tolist()], [[1.0]] * n_vertices),
    )


# ------------------------------------------------------------------------------- hierarchy
class MeshHierarchy:
    """Vertex graphs of a source-space triangulation at several resolutions.

    Build it with :meth:`from_headmodel` (or :meth:`from_triangles`); rebuild a
    stored one with :meth:`from_dict`.

    Attributes
    ----------
    n_vertices : tuple of int
        Number of vertices per level, finest (the image rows) first.
    edges : list of ndarray, shape (n_edges, 2)
        Undirected edges ``i < j`` of each level's graph.
    centers : list of ndarray
        For each level, the finest-level index of each vertex's representative.
    pool : list of tuple
        ``pool[l] = (indptr, indices)``: CSR lists of the level-``l`` vertices each
        level-``l + 1`` vertex pools over.
    unpool : list of tuple
        ``unpool[l] = (indptr, indices, weights)``: CSR lists of the level-``l + 1``
        parents (and interpolation weights summing to one) of each level-``l`` vertex.
    methods : tuple of str
        Coarsening rule of each step ``l -> l + 1`` (``"subdivision"`` or ``"cluster"``).
    hemi, spacing : str
        Where the hierarchy came from (informational, part of the fingerprint).
    prefix : bool
        Whether every coarse level's vertices are the first vertices of the
        finer level (true for ico/oct source spaces on fsaverage).
    """

    def __init__(self, *, n_vertices, edges, centers, pool, unpool, methods, hemi="", spacing=""):
        self.n_vertices = tuple(int(n) for n in n_vertices)
        self.edges = [np.asarray(e, np.int64).reshape(-1, 2) for e in edges]
        self.centers = [np.asarray(c, np.int64) for c in centers]
        self.pool = [tuple(np.asarray(a, np.int64) for a in p) for p in pool]
        self.unpool = [
            (np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(w, np.float64))
            for i, j, w in unpool
        ]
        self.methods = tuple(str(m) for m in methods)
        self.hemi = str(hemi)
        self.spacing = str(spacing)
        self._validate()
        self.fingerprint = array_fingerprint(
            *self.edges,
            *self.centers,
            *(a for p in self.pool for a in p),
            *(a for u in self.unpool for a in u),
            n_vertices=list(self.n_vertices),
            methods=list(self.methods),
            hemi=self.hemi,
            spacing=self.spacing,
        )

    def _validate(self) -> None:
        n_levels = len(self.n_vertices)
        if n_levels < 1:
            raise ValueError("A MeshHierarchy needs at least one level.")
        lengths = dict(
            edges=len(self.edges),
            centers=len(self.centers),
            pool=len(self.pool) + 1,
            unpool=len(self.unpool) + 1,
            methods=len(self.methods) + 1,
        )
        for name, length in lengths.items():
            if length != n_levels:
                raise ValueError(
                    f"MeshHierarchy: {name} describes {length} levels, n_vertices {n_levels}."
                )
        for level, (n, e, c) in enumerate(
            zip(self.n_vertices, self.edges, self.centers, strict=True)
        ):
            if len(e) and (e.min() < 0 or e.max() >= n):
                raise ValueError(f"MeshHierarchy level {level}: edge index out of range.")
            if len(c) != n:
                raise ValueError(f"MeshHierarchy level {level}: {len(c)} centers for {n} vertices.")
        for level in range(n_levels - 1):
            fine, coarse = self.n_vertices[level], self.n_vertices[level + 1]
            indptr, indices = self.pool[level]
            if (
                len(indptr) != coarse + 1
                or indptr[-1] != len(indices)
                or np.any(np.diff(indptr) < 1)
            ):
                raise ValueError(f"MeshHierarchy: malformed pooling table {level}->{level + 1}.")
            if len(indices) and (indices.min() < 0 or indices.max() >= fine):
                raise ValueError(f"MeshHierarchy: pooling index out of range at level {level}.")
            indptr, indices, weights = self.unpool[level]
            if len(indptr) != fine + 1 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 1):
                raise ValueError(f"MeshHierarchy: malformed unpooling table {level + 1}->{level}.")
            if len(indices) and (indices.min() < 0 or indices.max() >= coarse):
                raise ValueError(f"MeshHierarchy: unpooling index out of range at level {level}.")
            if len(weights) != len(indices):
                raise ValueError(f"MeshHierarchy: unpooling weights mismatch at level {level}.")

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_triangles(
        cls, triangles, positions=None, *, levels=3, method="auto", hemi="", spacing=""
    ) -> MeshHierarchy:
        """Build the hierarchy of one triangulated surface (possibly several components).

        Parameters
        ----------
        triangles : array-like, shape (n_triangles, 3)
            Vertex indices of the finest-level triangles.
        positions : array-like, shape (n_vertices, 3) | None
            Vertex positions; needed only when a level is coarsened by clustering.
        levels : int
            Number of resolution levels including the finest (``3``: ico3 -> ico2 -> ico1).
        method : ``"auto"`` | ``"subdivision"`` | ``"cluster"``
            Coarsening rule: ``"subdivision"`` requires a mid-point subdivision at every
            step (and raises otherwise), ``"cluster"`` always clusters, ``"auto"`` uses the
            subdivision where the check passes and clusters elsewhere.
        hemi, spacing : str
            Recorded in the description and fingerprint.

        Returns
        -------
        hierarchy : MeshHierarchy
        """
        if method not in COARSENING_METHODS:
            raise ValueError(f"method must be one of {COARSENING_METHODS}, got {method!r}.")
        if not isinstance(levels, int | np.integer) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}.")
        triangles = np.asarray(triangles)
        if triangles.ndim != 2 or triangles.shape[1] != 3 or len(triangles) == 0:
            raise ValueError(
                "Mesh-aware models need a triangulation: triangles must be a non-empty "
                f"(n_triangles, 3) array, got shape {triangles.shape}."
            )
        triangles = triangles.astype(np.int64)
        if positions is not None:
            positions = np.asarray(positions, float)
            if positions.ndim != 2 or positions.shape[1] != 3:
                raise ValueError(f"positions must be (n_vertices, 3), got {positions.shape}.")
            n_vertices = len(positions)
        else:
            n_vertices = int(triangles.max()) + 1
        if triangles.min() < 0 or triangles.max() >= n_vertices:
            raise ValueError(
                f"triangles index vertices outside [0, {n_vertices}); positions has "
                f"{n_vertices} rows."
            )
        edges = _edges_from_triangles(triangles)
        n_list, edge_list, center_list = [n_vertices], [edges], [np.arange(n_vertices)]
        pools, unpools, methods = [], [], []
        tris, pos = triangles, positions
        for level in range(1, levels):
            n = n_list[-1]
            step = None
            if method != "cluster" and tris is not None:
                step = _subdivision_coarsening(tris, n)
            if step is None:
                if method == "subdivision":
                    raise ValueError(
                        f"Level {level - 1} ({n} vertices) of this mesh is not a mid-point "
                        "subdivision (ico/oct) of a coarser one; use method='auto' or "
                        "'cluster', or fewer levels."
                    )
                if pos is None:
                    raise ValueError(
                        "positions are needed to coarsen a mesh that is not an ico/oct "
                        "subdivision (farthest-point clustering)."
                    )
                step = _cluster_coarsening(edge_list[-1], pos, n)
            n_list.append(len(step.coarse))
            edge_list.append(step.edges)
            center_list.append(center_list[-1][step.coarse])
            pools.append(step.pool)
            unpools.append(step.unpool)
            methods.append(step.method)
            tris = step.triangles
            pos = None if pos is None else pos[step.coarse]
        return cls(
            n_vertices=n_list,
            edges=edge_list,
            centers=center_list,
            pool=pools,
            unpool=unpools,
            methods=methods,
            hemi=hemi,
            spacing=spacing,
        )

    @classmethod
    def from_headmodel(cls, hm, hemi="rh", *, levels=3, method="auto") -> MeshHierarchy:
        """Build the hierarchy of a head model's source space for the rows of ``hemi``.

        Parameters
        ----------
        hm : HeadModel
            Head model whose source space has a triangulation (``use_tris``).
        hemi : ``"lh"`` | ``"rh"`` | ``"both"``
            Image rows the network sees (:meth:`HeadModel.rows`).
        levels : int
            Number of resolution levels including the finest.
        method : ``"auto"`` | ``"subdivision"`` | ``"cluster"``
            See :meth:`from_triangles`. With ``"auto"`` an ico/oct source space is
            coarsened along its subdivision hierarchy.

        Returns
        -------
        hierarchy : MeshHierarchy
        """
        from ..headmodel import check_hemi

        check_hemi(hemi)
        triangles = hm.triangles(hemi)  # raises a clear error without a triangulation
        positions = hm.positions[hm.rows(hemi)]
        spacing = str(getattr(hm, "spacing", ""))
        if method == "auto" and not re.fullmatch(r"(ico|oct)\d+", spacing):
            method = "cluster"
        return cls.from_triangles(
            triangles, positions, levels=levels, method=method, hemi=hemi, spacing=spacing
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_levels(self) -> int:
        return len(self.n_vertices)

    @property
    def prefix(self) -> bool:
        """Whether each coarse level is the leading block of the finer level's vertices."""
        return all(np.array_equal(c, np.arange(len(c))) for c in self.centers)

    def neighbour_table(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Padded neighbour indices and mean weights ``(n_vertices, max_degree)`` of a level.

        Padding entries point at the vertex itself with weight 0; the weights of a
        vertex's real neighbours are ``1 / degree`` (isolated vertices get all-zero rows).
        """
        n = self.n_vertices[level]
        edges = self.edges[level]
        lists = [[] for _ in range(n)]
        for i, j in edges.tolist():
            lists[i].append(j)
            lists[j].append(i)
        return _pad_lists(lists, n, normalise=True)

    def pool_table(self, level: int) -> np.ndarray:
        """Padded ``(n_coarse, max_members)`` member indices for pooling ``level -> level + 1``.

        Padding repeats the first member (the coarse vertex's own fine vertex), which
        leaves a max-pool unchanged; :meth:`pool_weights` gives mean weights.
        """
        indptr, indices = self.pool[level]
        lists = [indices[a:b].tolist() for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
        idx, _ = _pad_lists(lists, None, normalise=True, pad_with_first=True)
        return idx

    def pool_weights(self, level: int) -> np.ndarray:
        """Mean-pool weights matching :meth:`pool_table` (padding gets weight 0)."""
        indptr, indices = self.pool[level]
        lists = [indices[a:b].tolist() for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
        _, w = _pad_lists(lists, None, normalise=True, pad_with_first=True)
        return w

    def unpool_table(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Padded parent indices and weights ``(n_fine, max_parents)``, ``level + 1 -> level``."""
        indptr, indices, weights = self.unpool[level]
        width = int(np.diff(indptr).max())
        n = len(indptr) - 1
        idx = np.zeros((n, width), np.int64)
        w = np.zeros((n, width), np.float64)
        for v in range(n):
            a, b = indptr[v], indptr[v + 1]
            idx[v, : b - a] = indices[a:b]
            idx[v, b - a :] = indices[a]
            w[v, : b - a] = weights[a:b]
        return idx, w

    # -------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        """JSON-friendly description (all tables as lists) including the fingerprint."""
        return {
            "n_vertices": list(self.n_vertices),
            "methods": list(self.methods),
            "hemi": self.hemi,
            "spacing": self.spacing,
            "prefix": self.prefix,
            "edges": [e.tolist() for e in self.edges],
            "centers": [c.tolist() for c in self.centers],
            "pool": [[a.tolist() for a in p] for p in self.pool],
            "unpool": [[a.tolist() for a in u] for u in self.unpool],
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, description: dict) -> MeshHierarchy:
        """Rebuild a hierarchy from :meth:`to_dict`, checking its fingerprint."""
        required = ("n_vertices", "methods", "edges", "centers", "pool", "unpool")
        missing = [k for k in required if k not in description]
        if missing:
            raise ValueError(f"MeshHierarchy description lacks the keys {missing}.")
        mesh = cls(
            n_vertices=description["n_vertices"],
            edges=description["edges"],
            centers=description["centers"],
            pool=description["pool"],
            unpool=description["unpool"],
            methods=description["methods"],
            hemi=description.get("hemi", ""),
            spacing=description.get("spacing", ""),
        )
        expected = description.get("fingerprint")
        if expected is not None and expected != mesh.fingerprint:
            raise ValueError(
                f"MeshHierarchy description fingerprint {expected!r} does not match its "
                f"content ({mesh.fingerprint!r}); the description was modified or corrupted."
            )
        return mesh

    def summary(self) -> dict:
        """Small JSON-friendly summary (sizes, rules, fingerprint)."""
        return {
            "n_vertices": list(self.n_vertices),
            "n_edges": [len(e) for e in self.edges],
            "methods": list(self.methods),
            "hemi": self.hemi,
            "spacing": self.spacing,
            "prefix": self.prefix,
            "fingerprint": self.fingerprint,
        }

    def __repr__(self) -> str:
        sizes = " -> ".join(str(n) for n in self.n_vertices)
        return f"<MeshHierarchy {self.hemi or 'mesh'} {sizes} ({self.fingerprint})>"


def _pad_lists(lists, n, *, normalise, pad_with_first=False):
    """Pad index lists to a rectangle; weights ``1/len`` (or 0 for padding)."""
    n = len(lists) if n is None else n
    width = max(1, max((len(x) for x in lists), default=1))
    idx = np.zeros((n, width), np.int64)
    w = np.zeros((n, width), np.float64)
    for v, items in enumerate(lists):
        k = len(items)
        idx[v, :k] = items
        idx[v, k:] = items[0] if (pad_with_first and k) else v
        if k and normalise:
            w[v, :k] = 1.0 / k
    return idx, w
