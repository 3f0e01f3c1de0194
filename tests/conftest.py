"""Test-wide settings: offline, single-threaded (the CI machine has 2 cores), no telemetry, freed memory kept for reuse
(``zoo.cpu``)."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from zoo.cpu import configure_cpu  # noqa: E402

configure_cpu(1)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache folder that every hub/transformers call of the test uses."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return cache
