"""Replicates differ in initial weights and batch order: replicate 1 keeps the config seed's order (a single
run is unchanged), replicate k > 1 shuffles with its own seed derived from (seed, "order", k), reproducibly, on
the DataLoader path, the device-data fast path and under DDP; data and noise stay those of replicate 1."""

import json

import pytest
import torch
from torch.utils.data import DistributedSampler

from cxrdenoise.seeding import derived_seed, replicate_seed
from cxrdenoise.train.distributed import single_process
from cxrdenoise.train.engine import run_training
from cxrdenoise.train.settings import init_seed, order_seed
from test_train_helpers import TinyPairs, ddp_rank, free_port, settings, tiny_factory

SEED = 11  # test_train_helpers.settings' seed


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def sampler_order(n: int, seed: int, epoch: int, world: int = 1, rank: int = 0) -> list[int]:
    """The order a DistributedSampler with this seed gives one rank in one epoch (what the trainer used before
    replicates had an order seed of their own)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def train_orders(out, setup="gpu1", n_train=12, epochs=2, **over):
    """Train a tiny net; return (record, [epoch 1's train indices in order, epoch 2's, ...]) of the one rank."""
    orders: list[list[int]] = []
    record = run_training(settings(setup, epochs=epochs, **over), TinyPairs(n_train), TinyPairs(6, seed=1), out,
                          single_process("cpu"), model_factory=tiny_factory,
                          on_epoch_end=lambda epoch, info: orders.append(list(info["rank_indices"][0])))
    return record, orders


def test_order_seed_is_the_config_seed_for_replicate_1_and_derived_for_the_others():
    assert order_seed(7, 1) == init_seed(7, 1) == 7  # one replicate: the single run of before, same bytes
    assert order_seed(7, 2) == order_seed(7, 2) == derived_seed(7, "order", 2) % 2**63
    assert len({order_seed(7, 2), order_seed(7, 3), init_seed(7, 2), 7}) == 4  # its own stream, not init's
    assert 0 <= order_seed(7, 2) < 2**63 and replicate_seed(7, "init", 2) == init_seed(7, 2)
    one, two = settings(replicate=1), settings(replicate=2)
    assert (one.order_seed, two.order_seed) == (SEED, order_seed(SEED, 2))


def test_replicate_1_trains_in_the_config_seeds_order(tmp_path):
    record, orders = train_orders(tmp_path, replicate=1)
    assert orders == [sampler_order(12, SEED, epoch) for epoch in (1, 2)]
    assert (record["seed"], record["init_seed"], record["order_seed"]) == (SEED, SEED, SEED)


def test_replicate_2_has_its_own_reproducible_order_over_the_same_images(tmp_path):
    _, first = train_orders(tmp_path / "rep1", replicate=1)
    record, second = train_orders(tmp_path / "rep2", replicate=2)
    _, again = train_orders(tmp_path / "rep2_again", replicate=2)
    assert second == again  # reproducible
    assert second == [sampler_order(12, order_seed(SEED, 2), epoch) for epoch in (1, 2)]
    assert all(a != b and sorted(a) == sorted(b) for a, b in zip(first, second))  # same images, other order
    assert (record["replicate"], record["order_seed"]) == (2, order_seed(SEED, 2))
    assert record["init_seed"] == init_seed(SEED, 2) != record["order_seed"]
    on_disk = json.loads((tmp_path / "rep2" / "record.json").read_text())
    assert on_disk["order_seed"] == order_seed(SEED, 2) and on_disk["seed"] == SEED


def test_fast_path_uses_the_replicates_order_too(tmp_path):
    _, plain = train_orders(tmp_path / "gpu1", replicate=2)
    _, fast = train_orders(tmp_path / "fast", setup="gpu1_fast", replicate=2)
    assert fast == plain == [sampler_order(12, order_seed(SEED, 2), epoch) for epoch in (1, 2)]


class Killed(Exception):
    pass


def test_replicate_2_resumes_bit_identically(tmp_path):
    s = settings("gpu1", epochs=3, replicate=2)
    data = lambda: (TinyPairs(12), TinyPairs(6, seed=1))  # noqa: E731
    torch.use_deterministic_algorithms(True)
    try:
        run_training(s, *data(), tmp_path / "straight", single_process("cpu"), model_factory=tiny_factory)

        def kill(epoch, info):
            if epoch == 1:
                raise Killed

        out = tmp_path / "killed"
        with pytest.raises(Killed):
            run_training(s, *data(), out, single_process("cpu"), model_factory=tiny_factory, on_epoch_end=kill)
        for name in ("best.pt", "record.json", "epochs.csv"):  # Snakemake deletes a failed job's outputs
            (out / name).unlink(missing_ok=True)
        record = run_training(s, *data(), out, single_process("cpu"), model_factory=tiny_factory)
    finally:
        torch.use_deterministic_algorithms(False)
    assert record["resumed_after_epochs"] == [1] and record["order_seed"] == order_seed(SEED, 2)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)["model"]
    b = torch.load(out / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise


@pytest.mark.slow
def test_ddp_ranks_shuffle_with_the_replicates_order_seed(tmp_path):
    import torch.multiprocessing as mp

    out = {}
    for rep in (1, 2):
        d = tmp_path / f"rep{rep}"
        d.mkdir()
        mp.spawn(ddp_rank, args=(2, free_port(), str(d), "ddp2", 16, 8, {"replicate": rep}), nprocs=2, join=True)
        out[rep] = json.loads((d / "indices_epoch1.json").read_text())
    for rep, ranks in out.items():
        seed = order_seed(SEED, rep)
        assert ranks == [sampler_order(16, seed, 1, world=2, rank=r) for r in (0, 1)]
        assert sorted(ranks[0] + ranks[1]) == list(range(16))  # still a disjoint split of the same images
    assert out[1] != out[2]
