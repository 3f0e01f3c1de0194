"""The house rules, checked: one-way imports, no private names across packages, the README's methods table is the
registry's, and the project installs with its assets and runs from outside the checkout."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from explainers.registry import methods_table

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("explainers", "zoo", "benchmarks")
MODULES = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["py-modules"])
# What each part of the project may import from the others (data flows one way; see CONTRIBUTING in docs/).
ALLOWED = {
    "explainers": set(),
    "zoo": {"explainers"},
    "render": {"zoo"},
    "analysis": {"explainers", "zoo", "render"},
    "jobs": {"explainers", "zoo", "analysis"},
    "app": {"explainers", "zoo", "render", "analysis", "jobs"},
    "benchmarks": {"explainers", "zoo", "render", "analysis", "jobs", "app"},
    "videoxai": set(),                # dispatches by module name (importlib), so every command stays lazy
}


def _sources() -> dict[str, list[Path]]:
    found = {p: sorted((ROOT / p).rglob("*.py")) for p in PACKAGES}
    found.update({m: [ROOT / f"{m}.py"] for m in MODULES})
    return found


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_every_top_level_module_is_installed_and_has_its_place():
    assert sorted(p.stem for p in ROOT.glob("*.py")) == sorted(MODULES), "list it in pyproject's py-modules"
    assert set(MODULES) | set(PACKAGES) == set(ALLOWED)


def test_imports_go_one_way_and_never_through_a_private_name_of_another_part():
    parts = set(ALLOWED)
    for part, files in _sources().items():
        for path in files:
            for module, names in _imports(path):
                top = module.split(".")[0]
                if top not in parts or top == part:
                    continue
                where = f"{path.relative_to(ROOT)} imports {module}"
                assert top in ALLOWED[part], f"{where}: {part} may import only {sorted(ALLOWED[part]) or 'nothing'}"
                assert not any(s.startswith("_") for s in module.split(".")), f"{where}: a private module"
                assert not [n for n in names if n.startswith("_")], f"{where}: private names {names}"


def test_importing_explainers_loads_nothing_of_the_zoo_the_app_or_gradio():
    code = ("import sys, explainers; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'zoo', 'gradio', 'analysis', 'render', 'app', 'benchmarks', 'huggingface_hub', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_the_readme_methods_table_is_the_registry():
    assert methods_table() in (ROOT / "README.md").read_text(), "paste explainers.registry.methods_table() into it"


def test_the_readme_is_a_guide_of_at_most_10_kb_after_the_spaces_front_matter():
    text = (ROOT / "README.md").read_text()
    guide = text[text.index("\n---\n", 4) + 5:]
    assert len(guide.encode()) <= 10 * 1024


def test_no_document_or_module_cites_a_path_outside_the_repository():
    outside = ("shared/" + "docs", "shared/" + "papers", "METHODS" + " §", "BENCHMARKS" + ".md")   # not matching here
    documents = [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("tests/*.py")]
    for path in documents + [f for fs in _sources().values() for f in fs]:
        text = path.read_text()
        for citation in outside:
            assert citation not in text, f"{path.relative_to(ROOT)} cites {citation!r}"


@pytest.mark.slow
def test_an_installed_copy_lists_the_models_and_explains_an_example_from_outside_the_checkout(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "videoxai", *args], capture_output=True, text=True, env=env,
                                cwd=work)
        assert result.returncode == 0, result.stderr
        return result.stdout

    where = subprocess.run([sys.executable, "-c", "import zoo; print(zoo.__file__, zoo.ASSETS)"], env=env, cwd=work,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(target)) and f"{target}/zoo/assets" in where
    assert "synth-r2plus1d-small" in run("models")
    example = target / "zoo" / "assets" / "examples" / "synth_grow_1000004.mp4"
    out = run("explain", str(example), "--method", "grad_cam", "--out", "grow")
    assert "grad_cam: target grow" in out and (work / "grow" / "overlay.mp4").stat().st_size > 0
    assert (target / "bin" / "videoxai").exists()
