"""``milr.optimize``: the one call for library users."""

from __future__ import annotations

import contextlib
import inspect
import logging
import queue
import threading
import warnings
from dataclasses import fields
from typing import Any, Callable, Iterator, Sequence

from lightning import Callback, Trainer
from data.prompt import Prompt
from data.stream import PromptStream, feed_loader
from milr.backbone import JanusBackbone
from milr.module import TRAINER_DEFAULTS, MILRModule
from milr.options import MILROptions
from milr.state import MILRResult
from rewards.base import RewardFn


def as_prompts(prompts: Sequence[str | Prompt]) -> list[Prompt]:
    """Strings become ``Prompt(text, index=position)``; ``Prompt`` objects pass through."""
    return [p if isinstance(p, Prompt) else Prompt(p, i, {"prompt": p}) for i, p in enumerate(prompts)]


def _not_an_advert(record: logging.LogRecord) -> bool:
    return "litlogger" not in record.getMessage()


def ignore_known_warnings() -> None:
    """Hide warnings no user can act on: Lightning 2.6 calls a pytree class torch 2.13 deprecates
    and jsonargparse APIs jsonargparse 4.53 deprecates, and LightningCLI warns when it gets ``args`` while ``sys.argv`` has some (the runner passes
    ``sys.argv`` itself, with the demo config put in front). Also drops the cloud-logger tip every
    Trainer prints: milr logs to TensorBoard."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
    # Lightning 2.6's CLI calls jsonargparse APIs that jsonargparse 4.53 deprecates (add_instantiator, ...)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning\.pytorch\.cli")
    lightning_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_an_advert not in lightning_log.filters:
        lightning_log.addFilter(_not_an_advert)


def make_trainer(backbone: JanusBackbone, callbacks: Sequence[Callback] = (), **overrides: Any) -> Trainer:
    """A Trainer on the backbone's device with MILR's loop settings; no logger or bar by default."""
    ignore_known_warnings()
    kwargs: dict[str, Any] = {
        **TRAINER_DEFAULTS,
        "accelerator": "gpu" if backbone.device.type == "cuda" else "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "callbacks": list(callbacks),
    }
    kwargs.update(overrides)
    return Trainer(**kwargs)


def _with_options(function: Callable) -> Callable:
    """Show every ``MILROptions`` field in ``function``'s signature (``help()``, IDEs), before its
    ``**trainer_kwargs``: the options are defined once, there."""
    signature = inspect.signature(function)
    *head, rest = signature.parameters.values()
    options = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type) for f in fields(MILROptions)]
    function.__signature__ = signature.replace(parameters=[*head, *options, rest])
    return function


@_with_options
def optimize(
    prompts: Sequence[str | Prompt],
    backbone: JanusBackbone,
    reward: RewardFn,
    *,
    monitors: Sequence[RewardFn] = (),
    callbacks: Sequence[Callback] = (),
    **options: Any,
) -> list[MILRResult]:
    """Run MILR on ``prompts`` and return one ``MILRResult`` per prompt, in input order.

    ``batch_size`` prompts are optimised at once; a prompt that stops frees its slot for the
    next one. The options are ``MILRModule``'s (``milr.options.MILROptions``); extra keyword
    arguments go to ``lightning.Trainer`` (e.g. ``precision``). With ``on_reward_failure="skip"`` a
    prompt whose reward call failed has no result: it is left out of the list (a warning names it).

    Memory: the list holds every result until it is returned, each with two images and its step
    history (≈ 0.9 MB per prompt at 384 px): ~2 GB for GenEval × 4 images. For long prompt lists
    use ``optimize_stream``, which hands each result over as it finishes and keeps none.
    """
    items = as_prompts(prompts)
    order = {p.uid: i for i, p in enumerate(items)}
    results = optimize_stream(items, backbone, reward, monitors=list(monitors), callbacks=callbacks, **options)
    return sorted(results, key=lambda r: order[r.prompt.uid])


_MODULE_OPTIONS = frozenset(inspect.signature(MILRModule).parameters) - {"backbone", "reward"}
_DONE = object()


class _Handoff(Callback):
    """Moves each finished result from the module to the consumer's queue after every step; a
    full queue blocks the fit until the consumer takes one, so results never pile up."""

    def __init__(self, results: queue.Queue, stop: threading.Event) -> None:
        self.results, self.stop = results, stop

    def pass_on(self, module: MILRModule) -> None:
        for result in module.take_finished():
            self.results.put(result)

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.pass_on(pl_module)
        if self.stop.is_set():  # the consumer left: end the fit
            trainer.should_stop = True


def optimize_stream(
    prompts: Sequence[str | Prompt], backbone: JanusBackbone, reward: RewardFn, *, callbacks: Sequence[Callback] = (), **options: Any
) -> Iterator[MILRResult]:
    """``optimize`` for long prompt lists: yields each ``MILRResult`` as soon as its prompt
    finishes (in finishing order; ``result.prompt`` says which), keeping none itself, so memory
    stays flat however many prompts there are. ``options`` are ``optimize``'s (``MILRModule``'s
    options; the rest go to ``lightning.Trainer``).

    The fit runs in a worker thread that waits while a few batches of results are not taken yet;
    leaving the loop early ends the fit after its current step. An error of the fit is raised here.
    """
    module = MILRModule(backbone, reward, **{k: v for k, v in options.items() if k in _MODULE_OPTIONS})
    results: queue.Queue = queue.Queue(maxsize=2 * module.hparams.batch_size)
    stop, errors = threading.Event(), []
    handoff = _Handoff(results, stop)
    trainer = make_trainer(backbone, [*callbacks, handoff], **{k: v for k, v in options.items() if k not in _MODULE_OPTIONS})
    loader = feed_loader(PromptStream(as_prompts(prompts)))

    def fit() -> None:
        try:
            trainer.fit(module, train_dataloaders=loader)
            if not stop.is_set():
                module.finish_running()  # a fit that ended early (EarlyStopping, max_time): what each prompt has
                handoff.pass_on(module)
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer's thread
            errors.append(err)
        finally:
            results.put(_DONE)

    worker = threading.Thread(target=fit, name="milr-fit", daemon=True)
    worker.start()
    try:
        while (item := results.get()) is not _DONE:
            yield item
        if errors:
            raise errors[0]
    finally:
        stop.set()
        while worker.is_alive():  # unblock a fit waiting on a full queue
            with contextlib.suppress(queue.Empty):
                results.get(timeout=0.05)
        worker.join()
