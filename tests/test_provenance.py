"""Provenance: the config hash reaches every result file, and device labels name the device a job used."""

from cxrdenoise.provenance import CONFIG_HASH_ENV, device_info, hash_config, provenance


def test_config_hash_falls_back_to_the_workflow_environment(monkeypatch):
    monkeypatch.setenv(CONFIG_HASH_ENV, "e" * 64)
    assert provenance()["config_hash"] == "e" * 64
    assert provenance(config_hash=None)["config_hash"] == "e" * 64  # an absent CLI option must not erase it
    assert provenance(config_hash="a" * 64)["config_hash"] == "a" * 64
    assert provenance({"seed": 1})["config_hash"] == hash_config({"seed": 1})


def test_config_hash_ignores_key_order():
    assert hash_config({"a": 1, "b": {"c": 2, "d": 3}}) == hash_config({"b": {"d": 3, "c": 2}, "a": 1})


def test_cpu_job_is_labelled_with_the_processor():
    info = device_info("cpu")
    assert info["device"] == "cpu" and info["device_count"] == 0 and info["device_name"]
    assert provenance(device="cpu")["device"] == "cpu"
