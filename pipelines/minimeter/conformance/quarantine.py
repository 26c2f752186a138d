"""Failing recipients' trees of a published run moved out of reach (``minimeter conformance``).

A tree that fails its re-check moves to ``OUT/_quarantine/<run id>/<recipient>/`` and the
recipient's index is re-signed without it. (A run's own failures are quarantined at publication,
by ``minimeter.publish``.)
"""

from __future__ import annotations

from pathlib import Path

from minimeter.layout import OutLayout
from minimeter.manifest import Signer, write_index
from minimeter.storage import AnyPath, move_tree, remove_tree


def quarantine(
    layout: OutLayout, run_id: str, trees: dict[str, AnyPath], failed: list[str], pki: Path
) -> dict[str, AnyPath]:
    """Move each failing recipient's tree of ``run_id``; where each went."""
    moved: dict[str, AnyPath] = {}
    for rid in failed:
        if rid in trees:
            target = layout.quarantine(run_id, rid).base
            if target.exists():
                remove_tree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            move_tree(trees[rid], target)
            moved[rid] = target
    if moved:
        signer = Signer.from_pki(pki)
        for rid in moved:
            write_index(layout, rid, signer)
    return moved
