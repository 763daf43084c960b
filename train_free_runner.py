"""MILR runner: ``python train_free_runner.py`` runs the offline tiny demo (configs/demo.yaml);
``--config configs/janus_pro_7b_geneval.yaml --data.path <file> --output_dir out/`` the real thing.

LightningCLI builds the backbone (loaded once), the reward, the prompt DataModule and the
Trainer from YAML; this file only wires the output writer, TensorBoard and resume, and checks
the options before anything heavy is built: a user error exits with status 2 and one line.
A re-run with the same ``--output_dir`` skips prompts whose outputs are complete.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import json
import logging
import os
import sys
import tempfile
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from docstring_parser import parse
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from rich.console import Console, Group
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from callbacks.image_logger import TensorBoardImageLogger
from callbacks.progress import PromptProgressBar
from callbacks.timing import StepTimer
from callbacks.writer import OutputWriter
from data.datamodule import MILRDataModule, load_range, shard
from data.prompt import Prompt
from milr.api import ignore_known_warnings
from milr.backbone import CheckpointError, check_checkpoint
from milr.files import atomic_write
from milr.module import TRAINER_DEFAULTS, MILRModule
from milr.options import MILROptions, check_options
from milr.results.fingerprint import RunMismatch, check_prompts, check_run, result_settings
from milr.results.layout import RUN_FILE
from milr.results.lock import RunLock
from milr.results.write import failed_records, load_inflight, recover, save_config, stored_prompts
from milr.strategy import STRATEGY_NAME, external_launch

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"
HELP_FLAGS = ("-h", "--help")
#: packages whose own warnings and info logs a normal run hides (``--verbose`` shows them)
OUR_PACKAGES = ("milr", "rewards", "data", "callbacks", "train_free_runner", "__main__")


class UsageError(Exception):
    """A mistake in the options or the prompt source: reported as one line, exit status 2."""


class MILRCLI(LightningCLI):
    """LightningCLI plus ``--output_dir`` and ``--verbose``; the batch size is shared by data and
    model; the options are checked before any class is built."""

    show_help = False  # set by ``main`` for -h/--help: MILR's options with the config's values
    command_line: list[str] = []  # set by ``main``: the options the user typed (the launcher check needs them)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--output_dir", type=str, default="out/demo", help="where images, traces and logs go")
        parser.add_argument("--verbose", action="store_true", help="show Lightning's info lines and third-party warnings")
        parser.add_argument(
            "--tensorboard_root",
            type=Optional[str],
            default=None,
            help="log TensorBoard to <root>/<output_dir's name>, so `tensorboard --logdir <root>` overlays runs "
            "(default: <output_dir>/tensorboard)",
        )
        parser.add_argument(
            "--new_run", type=Optional[str], default=None,
            help="start a separate run in <output_dir>/<NAME> (when output_dir holds a run with other settings)",
        )
        parser.link_arguments("data.batch_size", "model.batch_size")

    def before_instantiate_classes(self) -> None:
        if self.show_help:
            Console().print(option_help(self.config, DEMO_CONFIG))
            raise SystemExit(0)
        if self.config.new_run:
            self.config.output_dir = str(Path(self.config.output_dir) / self.config.new_run)
        check_launch(self.config.trainer, self.command_line)
        self.prompts = check_config(self.config)
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_unset=False))
        self.run_record, self.lock = claim_folder(self.config, resolved, self.prompts)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        out = Path(self.config_init["output_dir"])
        if config.get("logger") in (None, True):
            config["logger"] = tensorboard_logger(out, self.config_init.get("tensorboard_root"))
        given = {type(c) for c in (config.get("callbacks") or []) + callbacks}
        defaults = [OutputWriter(out, repeats=self.config_init["data"].repeats), StepTimer(), TensorBoardImageLogger()]
        if config.get("enable_progress_bar") is not False:
            defaults.append(PromptProgressBar())
        callbacks = callbacks + [c for c in defaults if type(c) not in given]
        return super()._instantiate_trainer(config, callbacks)


# ------------------------------------------------ --help: MILR's own options, one line each, with the
# values of the config in use (the full LightningCLI help, every Trainer flag, stays behind --help-all)
TOP_LEVEL = {
    "--config": "a LightningCLI YAML (main config first, then fragments such as configs/rewards/*.yaml)",
    "--output_dir": "where images, traces, summary and TensorBoard logs go; a re-run resumes there",
    "--verbose": "show Lightning's info lines and third-party warnings",
    "--print_config": "print the resolved config and exit",
    "--help-all": "the full LightningCLI help, every --trainer.* flag included",
}


def _descriptions(cls: type) -> dict[str, str]:
    """Parameter name -> the one-line description in the class's ``Args:`` docstring."""
    docs = [cls.__doc__ or "", inspect.getdoc(cls.__init__) or ""]
    return {p.arg_name: " ".join((p.description or "").split()) for doc in docs for p in parse(doc).params}


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    if hasattr(value, "class_path"):
        return str(value.class_path)
    return "null" if value is None else str(value)


def _line(flag: str, value: str, meaning: str) -> Group:
    head = Text(flag, style="bold")
    if value:
        head.append(f" {value}", style="cyan")
    if not meaning:
        return Group(head)
    return Group(head, Padding(Text(meaning.replace("``", "")), (0, 0, 0, 4)))


def _rows(lines: list, prefix: str, cls: type, values: Any, skip: tuple[str, ...] = ()) -> None:
    docs = _descriptions(cls)
    for name in inspect.signature(cls.__init__).parameters:
        if name in ("self", *skip) or name not in values:
            continue
        lines.append(_line(f"--{prefix}{name}", _value(values[name]), docs.get(name, "")))


def option_help(config: Any, default_config: Path) -> Group:
    """MILR's options with their values in ``config`` (a parsed LightningCLI namespace)."""
    lines: list = []
    for flag, meaning in TOP_LEVEL.items():
        value = config.get(flag.lstrip("-").replace("-", "_"))
        lines.append(_line(flag, "" if value is None or flag == "--config" else _value(value), meaning))
    model = config.model
    _rows(lines, "model.", MILRModule, model, skip=("batch_size",))
    backbone = model.backbone
    _rows(lines, "model.backbone.", _class(backbone.class_path), backbone.init_args)
    reward = model.reward
    if hasattr(reward, "class_path"):
        _rows(lines, "model.reward.", _class(reward.class_path), reward.init_args or {})
    _rows(lines, "data.", MILRDataModule, config.data)
    used = [str(c) for c in (config.get("config") or [])] or [str(default_config)]
    return Group(
        Text("usage: python train_free_runner.py [--config FILE ...] [--option value ...]", style="bold"),
        Text(f"Values shown: {' + '.join(used)} plus the command line.\n"),
        *lines,
        Text(
            "\nTrainer options (--trainer.precision, --trainer.devices, --trainer.callbacks, ...) and every option's "
            "type and default: --help-all. docs/options.md explains each MILR option."
        ),
    )


def _checked(option: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one of the packages' own checks; its ``ValueError`` / ``FileNotFoundError`` becomes a
    ``UsageError`` that names ``option``."""
    try:
        return check(*args, **kwargs)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        message = str(err)
        raise UsageError(message if message.startswith(("model.", "data.", option)) else f"{option}: {message}") from None


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else None


def check_launch(trainer: Any, args: list[str]) -> None:
    """Under torchrun or ``srun`` the launcher's environment says how many processes run: the
    Trainer takes its devices and nodes from there (a config's ``devices: 1`` included), so the
    ranks shard the prompts instead of each running them all. Any run of several processes uses
    ``milr_independent`` unless told otherwise (DDP would all-reduce latents of different shapes).
    A count typed on the command line that disagrees with the launcher is a usage error."""
    launch = external_launch()
    if launch is not None and launch.processes > 1:
        for flag, key, want in (("--trainer.devices", "devices", launch.per_node), ("--trainer.num_nodes", "num_nodes", launch.nodes)):
            if _given(args, flag) and str(getattr(trainer, key)) != str(want):
                raise UsageError(
                    f"{flag} {getattr(trainer, key)} does not match {launch.launcher}, which started {want} "
                    f"(of {launch.processes} processes in all): leave {flag} out, the runner takes it from {launch.launcher}"
                )
        trainer.devices, trainer.num_nodes = launch.per_node, launch.nodes
    processes = launch.processes if launch is not None else (_number(trainer.devices) or 1) * trainer.num_nodes
    if processes < 2:
        return
    strategy = trainer.strategy
    if strategy == "auto":
        trainer.strategy = STRATEGY_NAME
    elif isinstance(strategy, str) and strategy.lower() != STRATEGY_NAME:
        raise UsageError(
            f"--trainer.strategy {strategy}: a run of several processes needs {STRATEGY_NAME} (each rank optimises its own "
            "prompts, nothing is all-reduced); leave --trainer.strategy out and the runner uses it"
        )


def check_output_dir(path: str) -> None:
    """``--output_dir`` must be a folder milr can write (or create) — checked without writing into it."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output_dir {path} is a file, not a folder: give a folder (it is created if missing)")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--output_dir {path}: {parent} is a file, so the folder cannot be created; give another path")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise UsageError(f"--output_dir {path} is not writable ({parent}: {err.strerror}); give a folder you can write") from None


def check_config(config: Any) -> list[Prompt]:
    """Every option and the prompt source, before the backbone, the reward or the Trainer exists;
    returns the prompts the source selects."""
    model, data = config.model, config.data
    if data.batch_size < 1:
        raise UsageError(f"data.batch_size must be >= 1 (prompts optimised at once), got {data.batch_size}")
    options = {k: v for k, v in vars(model).items() if k in MILROptions.names() and k != "batch_size"}
    _checked("model.", check_options, prefix="model.", batch_size=data.batch_size, **options)
    if data.start < 0:
        raise UsageError(f"data.start must be >= 0, got {data.start}")
    if (data.path is None) == (data.prompts is None):
        raise UsageError("give exactly one prompt source: --data.path <file> or --data.prompts '[...]'")
    prompts = _checked("data.path" if data.prompts is None else "data.prompts", load_range,
                       data.path, data.prompts, data.format, data.start, data.end, data.max_chars)
    _checked("model.backbone.name_or_path", check_checkpoint, model.backbone.init_args.name_or_path)
    check_output_dir(config.output_dir)
    return prompts


def tensorboard_logger(out: Path, root: Optional[str]) -> TensorBoardLogger:
    """``<out>/tensorboard``, or ``<root>/<out's name>``: one folder per run under a common root.
    That folder remembers its run, so a second run of the same name cannot mix its curves in."""
    if root is None:
        return TensorBoardLogger(save_dir=str(out), name="tensorboard", version="", default_hp_metric=False)
    folder, owner = Path(root) / out.name, str(out.resolve())
    marker = folder / "output_dir.txt"
    if marker.is_file() and marker.read_text().strip() != owner:
        raise UsageError(f"--tensorboard_root: {folder} already logs the run in {marker.read_text().strip()}; give this run another --output_dir name")
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(owner + "\n")
    return TensorBoardLogger(save_dir=str(root), name=out.name, version="", default_hp_metric=False)


def _rank() -> int:
    """This process's rank before Lightning sets up (torchrun, SLURM, or Lightning's own launcher)."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def claim_folder(
    config: Any, resolved: dict[str, Any], prompts: list[Prompt]
) -> tuple[dict[str, Any] | None, RunLock | None]:
    """Before any model loads: the folder must hold this run's settings and ``prompts`` (or
    nothing), and no other run may be writing it. Rank 0 holds the lock for every rank of its run."""
    out = Path(config.output_dir)
    record = check_run(out, result_settings(resolved))
    check_prompts(out, stored_prompts(out), prompts)
    if _rank() != 0 or resolved.get("trainer", {}).get("fast_dev_run"):
        return record, None
    lock = RunLock(out)
    lock.acquire()
    atexit.register(lock.release)
    return record, lock


def _prompts(n: int) -> str:
    return f"{n} prompt{'s' if n != 1 else ''}"


def _given(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _config_files(args: list[str]) -> list[str]:
    files = []
    for i, a in enumerate(args):
        if a in ("-c", "--config") and i + 1 < len(args):
            files.append(args[i + 1])
        elif a.startswith("--config="):
            files.append(a.split("=", 1)[1])
    return files


def _is_reward_fragment(path: str) -> bool:
    """A YAML that sets the reward (and its stop rule) but no backbone, data or trainer, as in configs/rewards/."""
    try:
        node = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False  # jsonargparse reports unreadable configs itself
    return isinstance(node, dict) and set(node) == {"model"} and isinstance(node["model"], dict) and "backbone" not in node["model"]


def with_defaults(args: list[str]) -> list[str]:
    """No ``--config`` given: run the embedded tiny demo. A prompt source on the command line
    (``--data.path`` or ``--data.prompts``) replaces the one in the config instead of clashing with it."""
    files = _config_files(args)
    if files and all(_is_reward_fragment(f) for f in files):
        raise UsageError(
            f"{files[0]} only sets the reward: add a main config first, e.g. "
            f"--config configs/janus_pro_7b_geneval.yaml --config {files[0]}"
        )
    if not files:
        args = ["--config", str(DEMO_CONFIG), *args]
    for flag, other in (("--data.path", "--data.prompts"), ("--data.prompts", "--data.path")):
        if _given(args, flag) and not _given(args, other):
            args = [*args, other, "null"]
    return args


def quiet(verbose: bool) -> None:
    """A normal run prints milr's own output only: Lightning's info lines ("GPU available", "Seed
    set", ...) and warnings raised outside our packages come back with ``--verbose``."""
    ignore_known_warnings()
    level = logging.INFO if verbose else logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        warnings.filterwarnings("ignore", module=rf"(?!({'|'.join(OUR_PACKAGES)})(\.|$))")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars


def main(args: list[str] | None = None) -> dict[str, Any]:
    args = list(sys.argv[1:] if args is None else args)
    MILRCLI.show_help = any(a in HELP_FLAGS for a in args)
    MILRCLI.command_line = args
    args = ["--help" if a == "--help-all" else a for a in args if a not in HELP_FLAGS]
    quiet("--verbose" in args)
    try:
        cli = MILRCLI(
            MILRModule,
            MILRDataModule,
            run=False,
            save_config_callback=None,
            auto_configure_optimizers=False,
            trainer_defaults=TRAINER_DEFAULTS,
            parser_kwargs={"exit_on_error": False},
            args=with_defaults(args),
        )
    except (UsageError, ArgumentError, RunMismatch, CheckpointError) as err:  # CheckpointError: the tokenizer checks at load
        hint = " (see --help)" if isinstance(err, ArgumentError) else ""
        Console(stderr=True).print(f"[bold red]error:[/] {escape(' '.join(str(err).split()))}{hint}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    try:
        summary = run(cli)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()  # every rank is done before any tears its process group down
        return summary
    finally:
        if cli.lock is not None:
            cli.lock.release()
        if torch.distributed.is_initialized():
            # without it a rank can abort at interpreter exit ("terminate called without an active
            # exception") while the process group's threads are still alive
            torch.distributed.destroy_process_group()


def run(cli: MILRCLI) -> dict[str, Any]:
    """Resume what the folder has (complete units skipped, in-flight ones continued) and fit."""
    out = Path(cli.config["output_dir"])
    console = Console()
    rank, world = cli.trainer.global_rank, cli.trainer.world_size
    if cli.trainer.fast_dev_run:
        console.print("fast_dev_run: a smoke test of the loop; nothing is written to the output folder")
    else:
        if rank == 0:
            save_config(out, cli.parser.dump(cli.config, skip_unset=False))
            if cli.run_record is not None:
                atomic_write(out / RUN_FILE, json.dumps(cli.run_record, indent=1, default=str))
        # ranks started by torchrun / srun run this at the same time: each touches its own prompts only
        # (a process that launches its ranks itself recovers the whole folder before they start)
        alone = rank == 0 and external_launch() is None
        mine = None if alone else {p.key for p in shard(cli.prompts, rank, world)}
        done = recover(out, cli.datamodule.repeats, mine)
        snapshots = load_inflight(out, mine)
        cli.datamodule.skip(done)
        cli.datamodule.first(s["uid"] for s in snapshots)
        cli.model.resume(snapshots)
        if done or snapshots:
            console.print(f"[bold]resume:[/] {_prompts(len(done))} already complete in {out}, {_prompts(len(snapshots))} continued where they stopped")
        if failed := failed_records(out):
            console.print(f"[bold]resume:[/] taking again {_prompts(len(failed))} whose reward failed before")
    cli.datamodule.setup("fit")
    if cli.datamodule.stream.exhausted:
        console.print("nothing to do: every prompt is complete")
        return {}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    writer = next(c for c in cli.trainer.callbacks if isinstance(c, OutputWriter))
    if cli.trainer.fast_dev_run or not writer.summary:  # a rank whose summary rank 0 wrote
        return writer.summary
    table = Table("metric", "value", title=f"MILR summary ({out})")
    for key, value in writer.summary.items():
        # lists (in_flight, failed) can be long: the table counts them, summary.json lists them
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(len(value) if isinstance(value, list) else value))
    console.print(table)
    if failed := writer.summary.get("failed"):  # empty in a launcher process whose ranks wrote it
        console.print(f"[bold yellow]{_prompts(len(failed))} failed[/] (reasons in {out}/summary.json "
                      "and failed/): re-running the same command retries them")
    return writer.summary


if __name__ == "__main__":
    main()
