"""A pack's writer: its checkpoints' rows block by block, its ledger, its summaries and its runs table.

``runner.run_pack`` writes through it as the pack trains; ``benchmarks/analysis.py --luck`` writes a
synthetic experiment through it, so that the files, their encodings and the ledgers it measures are
the trainer's own. The order is the contract ``verify`` and a resume rely on: the runs table marked
``running`` first, then each block's files and the ledger naming them (before a resumable checkpoint
is taken), then the summaries, then the runs table marked ``done`` last.
"""

from __future__ import annotations

import pyarrow as pa

from spec_ray.engine.measure.metrics import Checkpoint
from spec_ray.engine.training.pack import Pack
from spec_ray.storage import schema as S
from spec_ray.storage.ledger import Ledger, LedgerError
from spec_ray.storage.records import checkpoint_tables
from spec_ray.storage.summaries import write_winner_ranks
from spec_ray.storage.traces import TraceStore, block_name
from spec_ray.storage.verify import RUNS_FILE


class PackWriter:
    """The files of one pack as it trains."""

    def __init__(self, store: TraceStore, pack: Pack, resumed: bool = False) -> None:
        self.store, self.pack = store, pack
        self.ledger = _ledger(store, pack, resumed)
        self.pending: dict[str, list[pa.Table]] = {}

    def runs(self, table: pa.Table) -> None:
        """Write the pack's runs table (``running`` when it starts, ``done`` when it ends) and the ledger."""
        self.ledger.add(self.store.write(S.RUNS, self.pack.pack_id, RUNS_FILE, table))
        self.ledger.save()

    def add(self, ckpt: Checkpoint) -> None:
        """Keep one checkpoint's rows until its block is written."""
        for table, rows in checkpoint_tables(self.pack, ckpt).items():
            self.pending.setdefault(table, []).append(rows)

    def write(self, table: str, lo: int, hi: int, rows: pa.Table) -> None:
        """Write one table's rows of the block [lo, hi] as its file and list it (saved by ``flush``/``runs``)."""
        self.ledger.add(self.store.write(table, self.pack.pack_id, block_name(lo, hi), rows))

    def flush(self, lo: int, hi: int) -> None:
        """Write the block [lo, hi]'s rows, a file a table, and save the ledger that lists them."""
        for table, parts in self.pending.items():
            if parts:  # an opt-in table may have no rows in a block (modulation: first and last step)
                self.write(table, lo, hi, pa.concat_tables(parts))
            parts.clear()
        self.ledger.save()

    def summarize(self) -> None:
        """The pack's summaries, made from the files it wrote: Luck Matters' winner ranks where it kept its
        correlations (``storage.summaries``)."""
        if self.pack.spec.checkpoint.keep_correlations:
            files = self.ledger.paths(S.CORR_MATRICES)
            total = self.pack.spec.total_steps
            self.ledger.add(write_winner_ranks(self.store, self.pack.pack_id, total, files, long=False))


def _ledger(store: TraceStore, pack: Pack, resumed: bool) -> Ledger:
    """The pack's ledger: a resumed pack keeps the entries of the blocks it does not rewrite; a pack
    trained from its first step starts an empty one (its old files are all rewritten)."""
    if resumed:
        try:
            kept = Ledger.load(store, pack.pack_id)
        except LedgerError:
            kept = None  # damaged: verify names the pack, which a resume then trains afresh
        if kept is not None:
            return kept
    return Ledger(store, pack.pack_id)
