"""Site partitions, FedAvg and the DP step of the federated stage (pure functions, no Flower processes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cxrdenoise.errors import CxrError
from cxrdenoise.federated.fedavg import clip_update, dp_fedavg, fedavg, global_norm
from cxrdenoise.federated.partition import check_sites, partition_patients


def _train_frame(n_patients=400, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, size=n_patients)
    pids = np.repeat(np.arange(1000, 1000 + n_patients), counts)
    sex = np.repeat(rng.choice(["F", "M"], size=n_patients), counts)
    return pd.DataFrame({"image_id": [f"im{i}.png" for i in range(len(pids))], "patient_id": pids, "sex": sex})


@pytest.mark.parametrize("mode", ["random", "column"])
def test_sites_are_patient_disjoint_cover_train_and_follow_proportions(mode):
    frame = _train_frame()
    sites = [20, 25, 15, 30, 22]
    site = partition_patients(frame, sites, mode=mode, seed=11, column="sex")
    check_sites(frame, site)
    assert site.notna().all() and len(site) == len(frame)  # every train image sits in exactly one site
    assert set(site) == set(range(5))
    per_patient = pd.DataFrame({"p": frame.patient_id, "s": site}).groupby("p")["s"].nunique()
    assert (per_patient == 1).all()
    counts = site.value_counts().sort_index().to_numpy()
    expected = np.array(sites) / sum(sites) * len(frame)
    assert np.all(np.abs(counts - expected) <= 5), (counts, expected)  # within one patient's images (max 5)


def test_random_partition_is_seeded_and_column_mode_makes_sites_non_iid():
    frame = _train_frame()
    a = partition_patients(frame, [1, 1], seed=3)
    assert a.equals(partition_patients(frame, [1, 1], seed=3))
    assert not a.equals(partition_patients(frame, [1, 1], seed=4))
    by_sex = partition_patients(frame, [1, 1], mode="column", seed=3, column="sex")
    share_f = frame.assign(site=by_sex).groupby("site")["sex"].apply(lambda s: (s == "F").mean())
    assert share_f[0] > 0.9 and share_f[1] < 0.2


def test_partition_errors_name_the_key():
    frame = _train_frame(n_patients=3)
    with pytest.raises(CxrError, match="federated.sites"):
        partition_patients(frame, [1, 1, 1, 1])
    with pytest.raises(CxrError, match="federated.partition.column"):
        partition_patients(frame, [1, 1], mode="column", column="age_band")
    with pytest.raises(CxrError, match="federated.sites"):
        partition_patients(frame, [1, -1])


def test_fedavg_is_the_size_weighted_mean_on_a_tiny_model():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    wa = [p.detach().numpy().copy() for p in a.state_dict().values()]
    wb = [p.detach().numpy().copy() for p in b.state_dict().values()]
    out = fedavg([(wa, 30), (wb, 10)])
    # by hand: 0.75 * a + 0.25 * b, element by element
    w0 = [[0.75 * wa[0][0][j] + 0.25 * wb[0][0][j] for j in range(2)]]
    b0 = [0.75 * wa[1][0] + 0.25 * wb[1][0]]
    np.testing.assert_allclose(out[0], w0, rtol=1e-6)
    np.testing.assert_allclose(out[1], b0, rtol=1e-6)
    assert out[0].dtype == np.float32
    with pytest.raises(CxrError, match="different shapes"):
        fedavg([(wa, 1), (wa[:1], 1)])


def test_dp_clips_update_norm_and_adds_seeded_noise():
    current = [np.zeros((3, 3), np.float32), np.zeros(4, np.float32)]
    big = [np.full((3, 3), 10.0, np.float32), np.full(4, -10.0, np.float32)]
    small = [np.full((3, 3), 0.01, np.float32), np.zeros(4, np.float32)]
    clipped, norm = clip_update(big, 1.0)
    assert norm == pytest.approx(global_norm(big)) and global_norm(clipped) == pytest.approx(1.0, rel=1e-5)
    # no noise: the new global's update is the size-weighted mean of clipped updates, so its norm <= C
    new, rec = dp_fedavg(current, [(big, 5), (small, 5)], clip_norm=1.0, noise_multiplier=0.0, seed=1, server_round=1)
    assert global_norm(new) <= 1.0 + 1e-6
    assert global_norm(new) < global_norm(fedavg([(big, 5), (small, 5)]))  # clipping changed the update
    assert rec["update_norms"][0] == pytest.approx(global_norm(big))
    # noise: seeded by (seed, round), std = z * C / m
    n1, r1 = dp_fedavg(current, [(small, 1), (small, 1)], 1.0, 2.0, seed=1, server_round=1)
    n1b, _ = dp_fedavg(current, [(small, 1), (small, 1)], 1.0, 2.0, seed=1, server_round=1)
    n2, _ = dp_fedavg(current, [(small, 1), (small, 1)], 1.0, 2.0, seed=1, server_round=2)
    assert r1["noise_std"] == pytest.approx(1.0)
    assert all(np.array_equal(x, y) for x, y in zip(n1, n1b))
    assert not np.array_equal(n1[0], n2[0])
    resid = np.concatenate([(x - s).ravel() for x, s in zip(n1, small)])
    assert 0.3 < resid.std() < 3.0  # noise of the configured scale was added


def test_proximal_term_is_half_mu_squared_distance():
    from cxrdenoise.federated.fedavg import proximal_term

    w = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    g = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    assert float(proximal_term(w, g, 0.5)) == pytest.approx(0.25 * (1 + 4 + 4))
    assert proximal_term(w, g, 0.0) == 0.0


def _inprocess_exchange(spec):
    """Sites trained in this process (no Flower): exercises the round loop, not the transport."""
    from cxrdenoise.federated.server import Reply
    from cxrdenoise.federated.site import local_train

    def exchange(arrays, server_round):
        out = []
        for site in range(spec["n_sites"]):
            new, metrics = local_train(spec, site, arrays, server_round)
            n = sum(a.nbytes for a in arrays)
            out.append(Reply(site, new, metrics["num-examples"], n, n, metrics))
        return out
    return exchange


@pytest.mark.parametrize("dp", [False, True])
def test_round_loop_applies_dp_as_configured(tmp_path, dp):
    from datadir import build_data_dir

    from cxrdenoise.federated.runner import write_sites
    from cxrdenoise.federated.server import round_path, run_rounds
    from cxrdenoise.federated.weights import build, to_arrays

    data = build_data_dir(tmp_path, n_images=24, size=32, sigmas=(0.2,))
    spec = {"run_dir": str(tmp_path / "fed"), "data_dir": str(data), "sigma": 0.2, "model": "dncnn",
            "model_kwargs": {"depth": 3, "channels": 8}, "sites": [1, 1],
            "partition": {"mode": "random", "column": None}, "rounds": 1, "local_epochs": 2, "lr": 1e-2,
            "batch_size": 2, "strategy": "fedavg", "mu": 0.0, "seed": 5, "device": "cpu", "config_hash": "t",
            "n_sites": 2, "dp": {"enabled": dp, "clipping_norm": 1e-3, "noise_multiplier": 0.0}}
    (tmp_path / "fed").mkdir()
    write_sites(spec)
    start = to_arrays(build(spec, seeded=True))
    run_rounds(spec, _inprocess_exchange(spec), log=lambda m: None)
    ckpt = torch.load(round_path(tmp_path / "fed", 1), weights_only=True)
    update = [v.numpy() - s for v, s in zip(ckpt["state_dict"].values(), start)]
    record = __import__("json").loads((tmp_path / "fed" / "rounds.json").read_text())[0]
    if dp:
        assert global_norm(update) <= 1e-3 + 1e-6  # clipped to the configured norm
        assert record["dp"]["clip_norm"] == 1e-3 and min(record["dp"]["update_norms"]) > 1e-3
    else:
        assert global_norm(update) > 1e-2 and record["dp"] is None


def test_a_rerun_with_other_settings_discards_the_earlier_rounds(tmp_path):
    from cxrdenoise.federated.runner import discard_if_changed

    spec = {"rounds": 2, "local_epochs": 3, "insecure": False, "config_hash": "a"}
    (tmp_path / "rounds").mkdir()
    (tmp_path / "rounds" / "round_001.pt").write_bytes(b"x")
    (tmp_path / "rounds.json").write_text("[]")
    (tmp_path / "spec.json").write_text(__import__("json").dumps(spec))
    # a killed run re-run as it was (or with only TLS / timeout / config hash changed) keeps its rounds
    assert discard_if_changed(tmp_path, {**spec, "insecure": True, "config_hash": "b"}) == []
    assert (tmp_path / "rounds" / "round_001.pt").exists()
    assert discard_if_changed(tmp_path, {**spec, "local_epochs": 10}) == ["local_epochs"]
    assert not (tmp_path / "rounds" / "round_001.pt").exists() and not (tmp_path / "rounds.json").exists()
    assert "earlier rounds discarded" in (tmp_path / "server.log").read_text()


def test_packed_weights_round_trip_byte_for_byte():
    from cxrdenoise.federated.weights import layout, pack, unpack

    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4) / 7, np.array(5, dtype=np.int64),
              np.linspace(-1, 1, 5, dtype=np.float32)]
    buffer = pack(arrays)
    assert buffer.dtype == np.uint8 and buffer.size == sum(a.nbytes for a in arrays)
    back = unpack(buffer, layout(arrays))
    assert all(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b) for a, b in zip(arrays, back))
    with pytest.raises(ValueError, match="layout"):
        unpack(buffer[:-1], layout(arrays))


def test_site_threads_share_the_job_threads(monkeypatch):
    from cxrdenoise.federated.runner import THREAD_VARS, thread_env, thread_shares

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert thread_shares(3) == (1, 1)  # the demo: 2 cores, 3 sites
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert thread_shares(5) == (15, 3)
    assert set(thread_env(3)) == set(THREAD_VARS) and set(thread_env(3).values()) == {"3"}


def _fed_eval(root, which: str, source, psnr) -> str:
    """An evaluation folder of the federated stage (<root>/<which>/eval), copied from `source` with new PSNRs."""
    import json
    import shutil

    folder = root / which / "eval"
    shutil.copytree(source, folder)
    frame = pd.read_csv(folder / "per_image.csv", dtype={"image_id": str, "patient_id": str})
    frame["psnr"] = psnr
    frame.to_csv(folder / "per_image.csv", index=False, na_rep="NaN")
    summary = json.loads((folder / "summary.json").read_text())
    summary["metrics"]["psnr"]["mean"] = float(np.mean(psnr))
    summary.update(model="unet", sigma=0.1)
    (folder / "summary.json").write_text(json.dumps(summary))
    return str(folder / "per_image.csv")


def test_claims_table_judges_federated_against_each_site_and_centralized(tmp_path):
    from fixtures.results_tree import noisy_paths, paths, write_results_tree

    from cxrdenoise.tables.claims import FAILS, HOLDS, build_claims
    from cxrdenoise.tables.verdicts import ONE_RUN

    kw = dict(sigmas=("0.1",), setups=("gpu1",))
    results = write_results_tree(tmp_path / "r", n_images=40, **kw)
    central = results / "eval" / "unet" / "sigma0.1" / "gpu1" / "rep1"
    base = pd.read_csv(central / "per_image.csv")["psnr"].to_numpy()
    rng = np.random.default_rng(1)
    fed = [_fed_eval(tmp_path / "fed", "global", central, base - 0.1 + rng.normal(0, 0.05, len(base))),
           _fed_eval(tmp_path / "fed", "site0", central, base - 2.0 + rng.normal(0, 0.05, len(base))),
           _fed_eval(tmp_path / "fed", "site1", central, base + 1.0 + rng.normal(0, 0.05, len(base)))]
    table = build_claims(paths(results, "record", **kw), paths(results, "summary", **kw),
                         paths(results, "per_image", **kw), noisy_paths(results, sigmas=("0.1",)), resamples=300,
                         federated=fed).data
    rows = table[table["claim"].str.startswith("Federated")].set_index("claim")
    # one federated run and one centralized run: verdicts about these trained models only
    assert rows.loc["Federated FedAvg better than site 0 trained alone", "verdict"] == f"{HOLDS} {ONE_RUN}"
    assert rows.loc["Federated FedAvg better than site 1 trained alone", "verdict_kind"] == FAILS
    near = rows.loc["Federated FedAvg within the minor-drop margins of centralized training"]
    assert near["verdict_kind"] == HOLDS and -0.2 < near["ours_value"] < 0 and "SSIM" in near["scope"]
    assert rows["n_patients"].min() >= 10
    without = build_claims(paths(results, "record", **kw), paths(results, "summary", **kw),
                           paths(results, "per_image", **kw), noisy_paths(results, sigmas=("0.1",)), resamples=300).data
    assert not without["claim"].str.startswith("Federated").any()
