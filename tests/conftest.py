"""Test-wide settings: offline, single-threaded (the CI machine has 2 cores), no telemetry, freed memory kept for reuse
(``explainers.device``). The environment is set before any test module imports torch or huggingface_hub."""
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("OMP_NUM_THREADS", "1")


TIERS = ("integration", "slow", "architectures")


def pytest_configure(config):
    from explainers.device import configure_cpu

    configure_cpu(1)


def pytest_collection_modifyitems(items):
    """Tests of no other tier are the unit tier (``-m unit``)."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)

@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache folder that every hub/transformers call of the test uses."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return cache
