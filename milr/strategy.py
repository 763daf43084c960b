"""Data-parallel over prompts without gradient synchronisation.

Each rank optimises its own shard of prompts (``MILRDataModule`` shards by rank); the latents of
different ranks belong to different prompts and even have different shapes, so there is nothing
to all-reduce. ``IndependentRanks`` is Lightning's DDP process set-up (torchrun, SLURM and
Lightning's own launchers all work) without wrapping the module in ``DistributedDataParallel``.
It is registered as ``milr_independent``: LightningCLI lower-cases a ``--trainer.strategy`` string
into a strategy *name*, so a class path given that way cannot work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

STRATEGY_NAME = "milr_independent"


class IndependentRanks(DDPStrategy):
    """``DDPStrategy`` minus the gradient all-reduce: ranks run their prompts independently."""

    strategy_name = STRATEGY_NAME

    def configure_ddp(self) -> None:
        """Keep the bare LightningModule: no DistributedDataParallel wrapper, no gradient hooks."""


if STRATEGY_NAME not in StrategyRegistry:
    StrategyRegistry.register(STRATEGY_NAME, IndependentRanks, description="DDP processes, no gradient all-reduce (milr)")


@dataclass(frozen=True)
class Launch:
    """The processes an external launcher started: ``processes`` in all, ``per_node`` on each of ``nodes``."""

    launcher: str
    processes: int
    per_node: int
    nodes: int


def _count(name: str, default: int) -> int:
    """A SLURM count such as ``4`` or ``4(x2)`` (its first number)."""
    found = re.match(r"\d+", os.environ.get(name, ""))
    return int(found.group()) if found else default


def external_launch() -> Launch | None:
    """The torchrun or ``srun`` launch this process belongs to, read from the environment the
    launcher sets (as Lightning detects it); None for a plain ``python`` start."""
    if TorchElasticEnvironment.detect():
        processes = int(os.environ["WORLD_SIZE"])
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
        return Launch("torchrun", processes, per_node, max(1, processes // per_node))
    if SLURMEnvironment.detect() and SLURMEnvironment.job_name() not in ("bash", "interactive"):
        processes = _count("SLURM_NTASKS", 1)
        nodes = _count("SLURM_NNODES", _count("SLURM_JOB_NUM_NODES", 1))
        return Launch("srun", processes, _count("SLURM_NTASKS_PER_NODE", max(1, processes // nodes)), nodes)
    return None
