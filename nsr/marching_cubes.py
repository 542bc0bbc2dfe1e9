"""Marching cubes in plain, vectorised PyTorch: runs wherever the grid lives (CUDA, CPU, MPS), no compiled extension.

The triangle table is not typed in: `build_case_table` derives it from a rule applied to the cube's faces, so every
line of it can be checked. For a case (which of the 8 corners are inside, σ > level):

1. On each face, seen from outside, walk the 4 corners counter-clockwise. Each corner-to-corner edge with one corner
   inside and one outside holds a surface vertex, an *exit* (inside → outside) or an *entry*. Entries and exits
   alternate, and every exit is joined to the entry just before it. A face with two diagonal inside corners (the
   classic ambiguous face) therefore cuts off each inside corner on its own. The rule reads only the face's corners,
   so the two cubes that share a face join its vertices the same way: the surface is closed and manifold.
2. Each cube edge lies on two faces that walk it in opposite directions, so its vertex is the exit of one face and
   the entry of the other: the joins form disjoint cycles around the cube's surface.
3. Each cycle is split into triangles whose diagonals never join two vertices of one cube face. Such a vertex pair is
   also in the neighbouring cube, and if both cubes drew that diagonal its edge would belong to four triangles. (A
   plain fan does draw it, across ambiguous faces.) Every cycle of every case has such a split. Cycles are walked with
   the inside on a fixed side, so all triangles of all cases are wound alike; the order is chosen so normals point
   from high σ to low σ, out of a density field's object.

At run time each active cube looks its case up in the table; the vertices are keyed by the grid edge they lie on, so
neighbouring cubes share them and `torch.unique` welds the mesh in one pass.
"""
from __future__ import annotations

import functools

import torch

# Corner c of a cube sits at offset (bit 0, bit 1, bit 2) of c along (x, y, z).
CORNER_OFFSETS = torch.tensor([[(c >> axis) & 1 for axis in range(3)] for c in range(8)])
# Edge (a, b): corners that differ in one bit (the edge's axis); a is the one at the lower end.
EDGES = [(a, a | 1 << axis) for axis in range(3) for a in range(8) if not a >> axis & 1]


def _face_loops() -> list[list[int]]:
    """The 6 faces as 4 corners counter-clockwise seen from outside the cube."""
    loops = []
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3  # (u, v, axis) is right-handed
        for side in (0, 1):
            quad = [(side << axis) | (du << u) | (dv << v) for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1))]
            # Counter-clockwise about +axis; seen from outside the low face that turns clockwise, so reverse it.
            loops.append(quad if side else quad[::-1])
    return loops


def _shares_face(edge_a: int, edge_b: int) -> bool:
    corners = set(EDGES[edge_a]) | set(EDGES[edge_b])
    return any(corners <= set(quad) for quad in _face_loops())


def _split_cycle(cycle: list[int]) -> list[tuple[int, int, int]]:
    """Triangles (positions i < k < j of the cycle) whose diagonals join no two vertices of one cube face."""

    def split(i: int, j: int) -> list[tuple[int, int, int]] | None:  # the sub-polygon cycle[i..j]
        if j - i < 2:
            return []
        for k in range(i + 1, j):
            if any(b - a > 1 and _shares_face(cycle[a], cycle[b]) for a, b in ((i, k), (k, j))):
                continue
            left, right = split(i, k), split(k, j)
            if left is not None and right is not None:
                return left + [(i, k, j)] + right
        return None

    triangles = split(0, len(cycle) - 1)
    if triangles is None:
        raise AssertionError(f"cycle {cycle} has no split without same-face diagonals")
    return triangles


def case_triangles(case: int) -> list[tuple[int, int, int]]:
    """Triangles of one case (bit c set: corner c inside) as triples of edge indices into `EDGES`."""
    inside = [bool(case >> c & 1) for c in range(8)]
    edge_index = {frozenset(e): i for i, e in enumerate(EDGES)}
    next_vertex = {}
    for quad in _face_loops():
        crossings = []  # (edge, is_exit) in walking order
        for k in range(4):
            a, b = quad[k], quad[(k + 1) % 4]
            if inside[a] != inside[b]:
                crossings.append((edge_index[frozenset((a, b))], inside[a]))
        for k, (edge, is_exit) in enumerate(crossings):
            if is_exit:
                next_vertex[edge] = crossings[k - 1][0]
    triangles = []
    while next_vertex:
        start = min(next_vertex)
        cycle = [start]
        while next_vertex[cycle[-1]] != start:
            cycle.append(next_vertex[cycle[-1]])
        for edge in cycle:
            del next_vertex[edge]
        # The join runs exit → entry, i.e. clockwise around the inside corners seen from outside; the triangles are
        # wound the other way, so their normals point away from them.
        triangles += [(cycle[i], cycle[j], cycle[k]) for i, k, j in _split_cycle(cycle)]
    return triangles


@functools.cache
def build_case_table() -> tuple[torch.Tensor, torch.Tensor]:
    """→ table `(256, T, 3)` int64 of edge indices (rows padded with −1) and counts `(256,)` int64."""
    per_case = [case_triangles(case) for case in range(256)]
    width = max(len(t) for t in per_case)
    table = torch.full((256, width, 3), -1, dtype=torch.long)
    for case, triangles in enumerate(per_case):
        if triangles:
            table[case, : len(triangles)] = torch.tensor(triangles)
    return table, torch.tensor([len(t) for t in per_case])


def _edge_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Per cube edge: the offset `(12, 3)` of its lower corner and its axis `(12,)`."""
    lower = CORNER_OFFSETS[[a for a, _ in EDGES]]
    axis = torch.tensor([(a ^ b).bit_length() - 1 for a, b in EDGES])
    return lower, axis


@torch.no_grad()
def marching_cubes(sigma: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Iso-surface of a scalar grid `(X, Y, Z)` at `level` → vertices `(V, 3)` float32 in grid-index units and faces
    `(F, 3)` int64, both on the grid's device. Inside is σ > level; normals point from high σ to low σ.

    Vertices lie on grid edges, linearly interpolated, one per crossed edge. A vertex exactly on a grid node (σ equal
    to the level there) is shared by the faces around it only after welding equal positions, which `nsr.mesh` does.
    """
    if sigma.dim() != 3 or min(sigma.shape) < 2:
        raise ValueError(f"marching_cubes needs a (X, Y, Z) grid with every side ≥ 2, got {tuple(sigma.shape)}")
    device = sigma.device
    table, counts = (t.to(device) for t in build_case_table())
    edge_lower, edge_axis = (t.to(device) for t in _edge_tables())
    sx, sy, sz = sigma.shape
    inside = sigma > level
    case = torch.zeros(sx - 1, sy - 1, sz - 1, dtype=torch.uint8, device=device)
    for c, (dx, dy, dz) in enumerate(CORNER_OFFSETS.tolist()):
        case |= inside[dx : sx - 1 + dx, dy : sy - 1 + dy, dz : sz - 1 + dz].to(torch.uint8) << c
    case = case.reshape(-1)
    cells = torch.nonzero((case != 0) & (case != 255)).squeeze(1)
    if len(cells) == 0:
        return torch.empty(0, 3, device=device), torch.empty(0, 3, dtype=torch.long, device=device)
    cell_case = case[cells].long()
    per_cell = counts[cell_case]
    cell_of_tri = torch.repeat_interleave(torch.arange(len(cells), device=device), per_cell)
    slot = torch.arange(len(cell_of_tri), device=device) - (torch.cumsum(per_cell, 0) - per_cell)[cell_of_tri]
    tri_edges = table[cell_case[cell_of_tri], slot]  # (F, 3) cube-edge indices
    # Grid coordinates of each triangle corner's edge: cell origin + the edge's lower-corner offset.
    cell = cells[cell_of_tri]
    origin = torch.stack([cell // ((sy - 1) * (sz - 1)), cell // (sz - 1) % (sy - 1), cell % (sz - 1)], dim=-1)
    node = origin[:, None, :] + edge_lower[tri_edges]  # (F, 3, 3)
    node_index = (node[..., 0] * sy + node[..., 1]) * sz + node[..., 2]
    edge_key = node_index * 3 + edge_axis[tri_edges]
    keys, faces = torch.unique(edge_key.reshape(-1), return_inverse=True)
    faces = faces.reshape(-1, 3)
    # One vertex per crossed grid edge, interpolated where σ crosses the level.
    start, axis = keys // 3, keys % 3
    stride = torch.tensor([sy * sz, sz, 1], device=device)
    flat = sigma.reshape(-1)
    s0, s1 = flat[start].float(), flat[start + stride[axis]].float()
    t = ((level - s0) / (s1 - s0)).clamp(0.0, 1.0)
    vertices = torch.stack([start // (sy * sz), start // sz % sy, start % sz], dim=-1).float()
    vertices[torch.arange(len(keys), device=device), axis] += t
    return vertices, faces
