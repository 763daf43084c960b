"""PromptStream, PromptFeed and MILRDataModule: range, sharding, skip, resume state, dataloader."""

from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

import data.datamodule as datamodule_module
from data import MILRDataModule, Prompt, PromptFeed, PromptStream
from data.bundled import BENCHMARKS

GENEVAL = BENCHMARKS / "geneval" / "evaluation_metadata.jsonl"


def make_prompts(n: int) -> list[Prompt]:
    return [Prompt(f"prompt {i}", i, {"prompt": f"prompt {i}"}) for i in range(n)]


@pytest.fixture
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"prompt {i}\n" for i in range(10)))
    return path


def u(*indices: int) -> list[str]:
    """Units (``Prompt.uid``) of repeat 0 of the prompts at ``indices``."""
    return [f"{i:05d}#0" for i in indices]


def setup_dm(rank: int = 0, world_size: int = 1, skip=(), **kwargs) -> MILRDataModule:
    dm = MILRDataModule(**kwargs)
    if world_size > 1 or rank:
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=world_size)
    dm.skip(u(*skip))
    dm.setup("fit")
    return dm


def indices(prompts) -> list[int]:
    return [p.index for p in prompts]


# --------------------------------------------------------------------------- PromptStream


def test_stream_take_pops_in_order_until_exhausted():
    stream = PromptStream(make_prompts(5))
    assert (stream.pending, stream.exhausted, stream.taken) == (5, False, [])
    assert indices(stream.take(2)) == [0, 1]
    assert stream.take(0) == []
    assert indices(stream.take(2)) == [2, 3]
    assert indices(stream.pending_prompts) == [4]
    assert indices(stream.take(10)) == [4]  # fewer than asked near the end
    assert (stream.pending, stream.exhausted, stream.taken) == (0, True, u(0, 1, 2, 3, 4))
    assert stream.take(3) == []


def test_stream_rejects_negative_take_and_duplicate_indices():
    with pytest.raises(ValueError, match="n >= 0"):
        PromptStream(make_prompts(2)).take(-1)
    with pytest.raises(ValueError, match=r"repeated: \['00001#0'\]"):
        PromptStream(make_prompts(3) + [Prompt("again", 1)])


def test_stream_state_dict_round_trip():
    stream = PromptStream(make_prompts(6))
    stream.take(2)
    stream.take(1)
    restored = PromptStream(make_prompts(6))
    restored.load_state_dict(stream.state_dict())
    assert restored.taken == u(0, 1, 2)
    assert indices(restored.pending_prompts) == indices(stream.pending_prompts) == [3, 4, 5]
    assert indices(restored.take(2)) == indices(stream.take(2)) == [3, 4]


def test_stream_state_removes_taken_prompts_wherever_they_are():
    stream = PromptStream(make_prompts(5))
    stream.load_state_dict({"taken": u(3, 0)})
    assert indices(stream.pending_prompts) == [1, 2, 4]
    assert stream.taken == u(3, 0)


def test_stream_state_with_foreign_indices_is_an_error():
    with pytest.raises(ValueError, match=r"does not hold: \['00007#0'\]"):
        PromptStream(make_prompts(5)).load_state_dict({"taken": u(1, 7)})


# --------------------------------------------------------------------------- PromptFeed / DataLoader


def test_feed_yields_the_stream_itself_forever():
    stream = PromptStream(make_prompts(3))
    feed = iter(PromptFeed(stream))
    assert all(next(feed) is stream for _ in range(100))


def test_dataloader_yields_the_stream_and_prefetching_consumes_nothing(prompt_file):
    dm = setup_dm(path=str(prompt_file))
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, PromptFeed) and loader.num_workers == 0
    first, second = iter(loader), iter(loader)
    batches = [next(first), next(first), next(second)]
    assert all(batch is dm.stream for batch in batches)
    assert dm.stream.pending == 10 and dm.stream.taken == u()
    assert indices(batches[0].take(3)) == [0, 1, 2]
    assert dm.stream.pending == 7


class _PullOnePromptPerStep(pl.LightningModule):
    """A model that admits one prompt per step, as MILR admits prompts into free slots."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.admitted: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        assert isinstance(batch, PromptStream)
        self.admitted.append(indices(batch.take(1)))

    def configure_optimizers(self):
        return None


def test_trainer_prefetch_does_not_admit_prompts_before_the_step(prompt_file):
    dm = MILRDataModule(path=str(prompt_file))
    model = _PullOnePromptPerStep()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=3, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert model.admitted == [[0], [1], [2]]
    assert dm.stream.taken == u(0, 1, 2) and dm.stream.pending == 7


# --------------------------------------------------------------------------- MILRDataModule


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of path= .* or prompts="),
        ({"path": "p.txt", "prompts": ["a"]}, "exactly one of path="),
        ({"prompts": ["a"], "start": -1}, "start must be >= 0"),
        ({"prompts": ["a"], "start": 3, "end": 3}, "empty prompt range start=3, end=3"),
        ({"prompts": ["a"], "batch_size": 0}, "batch_size must be >= 1"),
        ({"prompts": ["a"], "max_chars": 0}, "max_chars must be >= 1"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MILRDataModule(**kwargs)


def test_prompts_from_the_command_line():
    dm = setup_dm(prompts=["a cat", "a dog"], batch_size=4)
    assert [(p.index, p.text, p.metadata) for p in dm.all_prompts] == [(0, "a cat", {"prompt": "a cat"}), (1, "a dog", {"prompt": "a dog"})]
    assert dm.batch_size == 4 and dm.hparams.batch_size == 4


def test_loader_errors_surface_at_setup(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a cat\n" + "x" * 30 + "\n")
    with pytest.raises(ValueError, match=r"p\.txt:2: prompt 1 is 30 characters long, over max_chars=20"):
        setup_dm(path=str(path), max_chars=20)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        setup_dm(path=str(tmp_path / "missing.txt"))


def test_explicit_format_is_used(tmp_path):
    path = tmp_path / "color_val.txt"
    path.write_text("a red cake\n")
    assert setup_dm(path=str(path)).all_prompts[0].metadata == {"prompt": "a red cake", "category": "color"}
    assert setup_dm(path=str(path), format="text").all_prompts[0].metadata == {"prompt": "a red cake"}


@pytest.mark.parametrize("start, end, expected", [(0, None, list(range(10))), (3, 6, [3, 4, 5]), (8, 100, [8, 9]), (9, None, [9])])
def test_range_keeps_start_le_index_lt_end(prompt_file, start, end, expected):
    dm = setup_dm(path=str(prompt_file), start=start, end=end)
    assert indices(dm.all_prompts) == indices(dm.pending_prompts) == expected
    assert [p.text for p in dm.all_prompts] == [f"prompt {i}" for i in expected]


def test_range_past_the_end_is_an_error(prompt_file):
    with pytest.raises(ValueError, match=r"data\.start=10 selects no prompt of .*prompts\.txt: its indices run from 0 to 9"):
        setup_dm(path=str(prompt_file), start=10)


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_cover_every_prompt_exactly_once(prompt_file, world_size):
    shards = [indices(setup_dm(rank, world_size, path=str(prompt_file), start=1).all_prompts) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(1, 10))
    assert shards[0] == list(range(1, 10, world_size))  # round-robin keeps shard sizes within one
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shards_of_the_real_geneval_set():
    shards = [setup_dm(rank, 3, path=str(GENEVAL)).all_prompts for rank in range(3)]
    assert sorted(i for shard in shards for i in indices(shard)) == list(range(553))
    assert all("include" in p.metadata for shard in shards for p in shard)


def test_more_ranks_than_prompts_leaves_a_rank_idle():
    dm = setup_dm(2, 3, prompts=["a cat", "a dog"])
    assert dm.all_prompts == [] and dm.stream.exhausted


def test_skip_excludes_finished_prompts_from_the_stream_only(prompt_file):
    dm = setup_dm(path=str(prompt_file), skip=[0, 2, 5, 42])
    assert indices(dm.all_prompts) == list(range(10))
    assert indices(dm.pending_prompts) == [1, 3, 4, 6, 7, 8, 9]
    sharded = setup_dm(1, 2, path=str(prompt_file), skip=[1, 2, 3])
    assert indices(sharded.all_prompts) == [1, 3, 5, 7, 9]
    assert indices(sharded.pending_prompts) == [5, 7, 9]


def test_skip_after_setup_is_refused(prompt_file):
    dm = setup_dm(path=str(prompt_file))
    with pytest.raises(RuntimeError, match=r"skip\(\) must be called before setup\(\)"):
        dm.skip(u(1))


def test_accessors_before_setup_are_refused(prompt_file):
    dm = MILRDataModule(path=str(prompt_file))
    for access in (lambda: dm.all_prompts, lambda: dm.pending_prompts, dm.train_dataloader):
        with pytest.raises(RuntimeError, match=r"call setup\(\) first"):
            access()
    assert dm.state_dict() == {}


def test_setup_twice_keeps_progress(prompt_file):
    dm = setup_dm(path=str(prompt_file))
    stream = dm.stream
    stream.take(4)
    dm.setup("validate")
    assert dm.stream is stream and dm.stream.pending == 6


def test_state_restores_the_cursor_before_or_after_setup(prompt_file):
    dm = setup_dm(path=str(prompt_file))
    dm.stream.take(3)
    state = dm.state_dict()
    assert state == {"taken": u(0, 1, 2)}

    after = setup_dm(path=str(prompt_file))
    stream = after.stream
    after.load_state_dict(state)  # Lightning restores the datamodule after setup
    assert after.stream is stream  # in place: a dataloader built earlier still sees it
    assert indices(after.pending_prompts) == list(range(3, 10))

    before = MILRDataModule(path=str(prompt_file))
    before.load_state_dict(state)
    before.setup("fit")
    assert indices(before.pending_prompts) == list(range(3, 10))
    assert indices(before.stream.take(1)) == [3]


def test_state_is_redistributed_when_the_world_size_changes(prompt_file):
    dm = setup_dm(path=str(prompt_file))
    dm.stream.take(5)
    state = dm.state_dict()
    ranks = [MILRDataModule(path=str(prompt_file)) for _ in range(2)]
    for rank, shard in enumerate(ranks):
        shard.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        shard.load_state_dict(state)
        shard.setup("fit")
    assert [indices(r.pending_prompts) for r in ranks] == [[6, 8], [5, 7, 9]]
    assert [r.stream.taken for r in ranks] == [u(0, 2, 4), u(1, 3)]


def test_state_combined_with_skip_ignores_skipped_prompts(prompt_file):
    dm = setup_dm(path=str(prompt_file))
    dm.stream.take(4)
    resumed = MILRDataModule(path=str(prompt_file))
    resumed.skip(u(0, 1, 7))  # finished outputs found on disk
    resumed.load_state_dict(dm.state_dict())
    resumed.setup("fit")
    assert indices(resumed.pending_prompts) == [4, 5, 6, 8, 9]


def test_state_dict_gathers_what_every_rank_has_taken(prompt_file, monkeypatch):
    """Only rank 0's checkpoint is written, so its state must include the other ranks' progress."""
    dm = setup_dm(0, 2, path=str(prompt_file))
    dm.stream.take(2)  # rank 0 took 0, 2; pretend rank 1 took 1

    def all_gather_object(parts, obj):
        parts[0], parts[1] = obj, u(1)

    monkeypatch.setattr(datamodule_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(datamodule_module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(datamodule_module.dist, "all_gather_object", all_gather_object)
    assert dm.state_dict() == {"taken": u(0, 1, 2)}


def test_state_dict_without_distributed_is_local(prompt_file):
    assert not torch.distributed.is_initialized()
    dm = setup_dm(path=str(prompt_file))
    dm.stream.take(2)
    assert dm.state_dict() == {"taken": u(0, 1)}
