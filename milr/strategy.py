"""Data-parallel over prompts without gradient synchronisation.

Each rank optimises its own shard of prompts (``MILRDataModule`` shards by rank); the latents of
different ranks belong to different prompts and even have different shapes, so there is nothing
to all-reduce. ``IndependentRanks`` is Lightning's DDP process set-up (torchrun, SLURM and
Lightning's own launchers all work) without wrapping the module in ``DistributedDataParallel``.
"""

from __future__ import annotations

from lightning.pytorch.strategies import DDPStrategy


class IndependentRanks(DDPStrategy):
    """``DDPStrategy`` minus the gradient all-reduce: ranks run their prompts independently."""

    strategy_name = "milr_independent"

    def configure_ddp(self) -> None:
        """Keep the bare LightningModule: no DistributedDataParallel wrapper, no gradient hooks."""
