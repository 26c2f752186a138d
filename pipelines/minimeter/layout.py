"""Every path of an output folder (``--out``): the one module that knows where things live.

```
OUT/
  _lock                                    the run holding OUT (pid, host, run id, since)
  _staging/<run id>/                       a run in progress: invisible to recipients
      recipients/<recipient>/...           a recipient tree (below) of this run
      dead_letters.parquet  counts.json    the run's dead letters and counts
      conflicts.parquet                    readings two messages disagree about
      work/                                the encrypted spill (decoded readings)
      state/                               readings carried to the next run (sealed)
      publish.json                         the commit record, written once the audit commits
  <recipient>/runs/<run id>/               a published recipient tree (below)
  <recipient>/index.json(.p7s)             every published run of the recipient, signed
  _quarantine/<run id>/<recipient>/        a recipient tree that failed conformance
  _dead_letters/<run id>.parquet           message name, stage, category (never content)
  _state/<run id>/  _state/index.json      carried readings of published runs, and their chain
  _audit/audit.duckdb                      runs, counts, dead letters, manifests, conformance
```

A recipient tree: ``data/date=YYYY-MM-DD/<run id>.parquet`` (rows the policy allows),
``forward/<name>.cms`` (relayed messages) and ``manifest.json`` with its detached CMS signature
``manifest.json.p7s``. A run's staging tree becomes a published tree by one rename, so a recipient
never sees a run's files without their signed manifest (in an object store, by copies with the
manifest last: a tree without its signed manifest is still arriving; ``minimeter.storage``). Recipient ids never start with ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass

from minimeter.storage import AnyPath, ObjectPath, children, keys_below, subfolders

MANIFEST = "manifest.json"
SIGNATURE = MANIFEST + ".p7s"
INDEX = "index.json"


@dataclass(frozen=True)
class RecipientTree:
    """One recipient's files of one run (staged, published or quarantined)."""

    base: AnyPath
    run_id: str

    def data_file(self, day: str) -> AnyPath:
        return self.base / "data" / f"date={day}" / f"{self.run_id}.parquet"

    def forward_file(self, name: str) -> AnyPath:
        return self.base / "forward" / name

    @property
    def manifest(self) -> AnyPath:
        return self.base / MANIFEST

    @property
    def signature(self) -> AnyPath:
        return self.base / SIGNATURE

    def data_files(self) -> list[AnyPath]:
        return sorted(self.base.glob("data/date=*/*.parquet"))

    def forward_files(self) -> list[AnyPath]:
        return sorted(self.base.glob("forward/*.cms"))


@dataclass(frozen=True)
class Staging:
    """One run's staging area."""

    base: AnyPath
    run_id: str

    def recipient(self, recipient: str) -> RecipientTree:
        return RecipientTree(self.base / "recipients" / recipient, self.run_id)

    def recipients(self) -> list[str]:
        d = self.base / "recipients"
        return subfolders(d)

    @property
    def dead_letters(self) -> AnyPath:
        return self.base / "dead_letters.parquet"

    @property
    def counts(self) -> AnyPath:
        return self.base / "counts.json"

    @property
    def conflicts(self) -> AnyPath:
        return self.base / "conflicts.parquet"

    @property
    def work(self) -> AnyPath:
        return self.base / "work"

    @property
    def state(self) -> AnyPath:
        return self.base / "state"

    @property
    def publish_record(self) -> AnyPath:
        return self.base / "publish.json"

    @property
    def replaced(self) -> AnyPath:
        """Where a re-run's earlier published trees go on their way out."""
        return self.base / "replaced"


@dataclass(frozen=True)
class OutLayout:
    root: AnyPath

    @property
    def lock(self) -> AnyPath:
        return self.root / "_lock"

    @property
    def audit_db(self) -> AnyPath:
        return self.root / "_audit" / "audit.duckdb"

    @property
    def staging_root(self) -> AnyPath:
        return self.root / "_staging"

    def staging(self, run_id: str) -> Staging:
        return Staging(self.staging_root / run_id, run_id)

    def stagings(self) -> list[Staging]:
        d = self.staging_root
        return [self.staging(n) for n in children(d)]

    def recipient_root(self, recipient: str) -> AnyPath:
        return self.root / recipient

    def published(self, recipient: str, run_id: str) -> RecipientTree:
        return RecipientTree(self.root / recipient / "runs" / run_id, run_id)

    def published_runs(self, recipient: str) -> list[RecipientTree]:
        d = self.root / recipient / "runs"
        return [self.published(recipient, n) for n in children(d)]

    def index(self, recipient: str) -> AnyPath:
        return self.root / recipient / INDEX

    def index_signature(self, recipient: str) -> AnyPath:
        return self.root / recipient / (INDEX + ".p7s")

    def recipients(self) -> list[str]:
        """Recipients with a published tree."""
        if isinstance(self.root, ObjectPath):  # one listing
            parts = [k.split("/") for k in keys_below(self.root)]
            found = {p[0] for p in parts if len(p) > 2 and p[1] == "runs"}
            return sorted(n for n in found if not n.startswith(("_", ".")))
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "runs").is_dir()
        )

    def quarantine(self, run_id: str, recipient: str) -> RecipientTree:
        return RecipientTree(self.root / "_quarantine" / run_id / recipient, run_id)

    def dead_letters(self, run_id: str) -> AnyPath:
        return self.root / "_dead_letters" / f"{run_id}.parquet"

    @property
    def state_root(self) -> AnyPath:
        return self.root / "_state"

    def state(self, run_id: str) -> AnyPath:
        return self.state_root / run_id

    @property
    def state_index(self) -> AnyPath:
        return self.state_root / "index.json"

    def data_files(self, recipient: str) -> list[AnyPath]:
        """Every published data file of a recipient, in date order (then run)."""
        files = [f for tree in self.published_runs(recipient) for f in tree.data_files()]
        return sorted(files, key=lambda f: (f.parent.name, f.name))

    def forward_files(self, recipient: str) -> list[AnyPath]:
        return [f for tree in self.published_runs(recipient) for f in tree.forward_files()]
