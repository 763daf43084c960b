"""MILR runner: ``python train_free_runner.py`` runs the offline tiny demo (configs/demo.yaml);
``--config configs/janus_pro_7b_geneval.yaml --data.path <file> --output_dir out/`` the real thing.

LightningCLI builds the backbone (loaded once), the reward, the prompt DataModule and the
Trainer from YAML; this file only wires the output writer, TensorBoard and resume.
A re-run with the same ``--output_dir`` skips prompts whose outputs are complete.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from rich.console import Console
from rich.table import Table

from callbacks.image_logger import TensorBoardImageLogger
from callbacks.progress import PromptProgressBar
from callbacks.timing import StepTimer
from callbacks.writer import OutputWriter, atomic_write, completed
from data.datamodule import MILRDataModule
from milr.api import ignore_known_warnings
from milr.module import TRAINER_DEFAULTS, MILRModule

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


class MILRCLI(LightningCLI):
    """LightningCLI plus ``--output_dir``; the batch size is shared by data and model."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--output_dir", type=str, default="out/demo", help="where images, traces and logs go")
        parser.add_argument(
            "--tensorboard_root",
            type=Optional[str],
            default=None,
            help="log TensorBoard to <root>/<output_dir's name>, so `tensorboard --logdir <root>` overlays runs "
            "(default: <output_dir>/tensorboard)",
        )
        parser.link_arguments("data.batch_size", "model.batch_size")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        out = Path(self.config_init["output_dir"])
        if config.get("logger") in (None, True):
            config["logger"] = tensorboard_logger(out, self.config_init.get("tensorboard_root"))
        given = {type(c) for c in (config.get("callbacks") or []) + callbacks}
        defaults = [OutputWriter(out), StepTimer(), TensorBoardImageLogger()]
        if config.get("enable_progress_bar") is not False:
            defaults.append(PromptProgressBar())
        callbacks = callbacks + [c for c in defaults if type(c) not in given]
        return super()._instantiate_trainer(config, callbacks)


def tensorboard_logger(out: Path, root: Optional[str]) -> TensorBoardLogger:
    """``<out>/tensorboard``, or ``<root>/<out's name>``: one folder per run under a common root.
    That folder remembers its run, so a second run of the same name cannot mix its curves in."""
    if root is None:
        return TensorBoardLogger(save_dir=str(out), name="tensorboard", version="", default_hp_metric=False)
    folder, owner = Path(root) / out.name, str(out.resolve())
    marker = folder / "output_dir.txt"
    if marker.is_file() and marker.read_text().strip() != owner:
        raise ValueError(f"{folder} already logs the run in {marker.read_text().strip()}; give this run another --output_dir name")
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(owner + "\n")
    return TensorBoardLogger(save_dir=str(root), name=out.name, version="", default_hp_metric=False)


def _given(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def with_defaults(args: list[str]) -> list[str]:
    """No ``--config`` given: run the embedded tiny demo. A prompt source on the command line
    (``--data.path`` or ``--data.prompts``) replaces the one in the config instead of clashing with it."""
    if not _given(args, "--config"):
        args = ["--config", str(DEMO_CONFIG), *args]
    for flag, other in (("--data.path", "--data.prompts"), ("--data.prompts", "--data.path")):
        if _given(args, flag) and not _given(args, other):
            args = [*args, other, "null"]
    return args


def main(args: list[str] | None = None) -> dict[str, Any]:
    ignore_known_warnings()
    cli = MILRCLI(
        MILRModule,
        MILRDataModule,
        run=False,
        save_config_callback=None,
        auto_configure_optimizers=False,
        trainer_defaults=TRAINER_DEFAULTS,
        args=with_defaults(sys.argv[1:] if args is None else list(args)),
    )
    out = Path(cli.config["output_dir"])
    atomic_write(out / "config.yaml", cli.parser.dump(cli.config, skip_none=False))
    done = completed(out)
    cli.datamodule.skip(done)
    console = Console()
    if done:
        console.print(f"[bold]resume:[/] {len(done)} prompts already complete in {out}, skipping them")
    cli.datamodule.setup("fit")
    if cli.datamodule.stream.exhausted:
        console.print("nothing to do: every prompt is complete")
        return {}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    writer = next(c for c in cli.trainer.callbacks if isinstance(c, OutputWriter))
    table = Table("metric", "value", title=f"MILR summary ({out})")
    for key, value in writer.summary.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    return writer.summary


if __name__ == "__main__":
    main()
