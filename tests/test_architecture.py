"""The structure the code promises, checked: who may import whom, and who may touch LanceDB.

- The encoder service loads and serves without the trainer stack (dm_control, mujoco, stable-baselines3,
  gymnasium, matplotlib): checked in a fresh process where importing any of them fails, as in an encoder-only
  install (pip install ".[encoder]").
- The CLI imports with the core set only; a trainer command without the trainer extra says so in one line.
- The import graph of services/, clients/ and vjepa_robot/ (module-level AND function-level imports, read with
  ast) has no cycles and none of the forbidden edges.
- services/common/store.py is the only module that touches LanceDB (tables, Lance datasets, table names).
- The run-kind registry is the one place a kind is named: no module outside it compares a run's kind with a
  literal kind name (`record.kind == "sac"`); they ask the kind's hooks (vjepa_robot_lab/records/run_kinds.py).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAINER_STACK = ("dm_control", "mujoco", "stable_baselines3", "gymnasium", "matplotlib")
STORE_MODULE = "services.common.store"

# A fresh interpreter in which the trainer stack cannot be imported (installed or not), like an encoder image.
BLOCK_TRAINER_STACK = textwrap.dedent(f"""
    import sys

    class _NoTrainerStack:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {TRAINER_STACK!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _NoTrainerStack())
""")


def _run(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TRAINER_STACK + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ----------------------------------------------------------------------------------------------------------------
# The encoder and the CLI without the trainer stack
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_encoder_app_loads_and_serves_without_trainer_or_cli_modules(tmp_path):
    proc = _run(f"""
        import json, sys
        import numpy as np
        import services.encoder.app
        from fastapi.testclient import TestClient
        from services.encoder.app import create_app
        from services.encoder.model import Encoder
        from services.encoder.settings import EncoderSettings
        from vjepa_robot_client.contract import to_npy_bytes, NPY_MEDIA_TYPE

        encoder = Encoder.from_preset("tiny", device="cpu", num_threads=1)  # the random-init stand-in
        app = create_app(EncoderSettings(store={str(tmp_path)!r}, max_batch=2, max_wait_ms=1.0), encoder=encoder)
        with TestClient(app) as client:
            health = client.get("/healthz").status_code
            body = to_npy_bytes(np.zeros((1, 8, 32, 32, 3), np.uint8))
            encode = client.post("/encode", content=body, headers={{"Content-Type": NPY_MEDIA_TYPE}}).status_code
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in {TRAINER_STACK!r} or m == "vjepa_robot" or m.startswith("vjepa_robot.")
                        or m.startswith("services.trainer") or m.startswith("vjepa_robot_lab"))
        print(json.dumps({{"health": health, "encode": encode, "loaded": loaded}}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"health": 200, "encode": 200, "loaded": []}


def test_cli_runs_encoder_commands_without_the_trainer_stack_and_names_the_extra_otherwise(tmp_path):
    proc = _run(f"""
        import sys
        from vjepa_robot.cli import main

        def call(*argv):
            sys.argv = ["vjepa-robot", *argv]
            try:
                main()
            except SystemExit as exc:
                return exc.code or 0
            return 0

        print("serve-encoder-help", call("serve", "encoder", "--help"), file=sys.stderr)
        print("datasets-create", call("datasets", "create", "x", "--episodes", "1", "--store", {str(tmp_path)!r}),
              file=sys.stderr)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "serve-encoder-help 0" in proc.stderr, proc.stderr[-3000:]
    assert "datasets-create 2" in proc.stderr, proc.stderr[-3000:]
    assert 'pip install "vjepa-robot[trainer]"' in proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------------------------------------------
# The import graph
# ----------------------------------------------------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    """Module name -> file, for the four packages the project ships."""
    out: dict[str, Path] = {}
    for base, top in (
        (ROOT, "services"),
        (ROOT, "vjepa_robot"),
        (ROOT, "vjepa_robot_lab"),
        (ROOT / "clients", "vjepa_robot_client"),
    ):
        for path in sorted((base / top).rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, at any depth (functions included)."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and _is_type_checking(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in known else base, node.lineno))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _graph() -> dict[str, list[tuple[str, int]]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(m, p, known) for m, p in modules.items()}


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


FORBIDDEN = [
    # (importer package, imported package, why)
    ("services.trainer", "services.encoder", "the trainer reaches the encoder over HTTP (the SDK) only"),
    ("services.encoder", "services.trainer", "the encoder image carries no simulator or RL stack"),
    ("services", "vjepa_robot", "services never import the CLI package"),
    ("services.common", "services.trainer", "shared code depends on neither service"),
    ("services.common", "services.encoder", "shared code depends on neither service"),
    ("vjepa_robot_lab", "services.trainer", "the research library imports no door (the trainer service is one)"),
    ("vjepa_robot_lab", "services.encoder", "the library reaches the encoder over HTTP (the SDK) only"),
    ("vjepa_robot_lab", "vjepa_robot", "the research library imports no door (the CLI and the Gymnasium envs are)"),
    ("services.encoder", "vjepa_robot_lab", "the encoder image carries no simulator or RL stack"),
    ("services.common", "vjepa_robot_lab", "shared code sits below the library"),
    ("vjepa_robot_client", "vjepa_robot_lab", "the SDK installs alone (httpx, pydantic, numpy)"),
    ("vjepa_robot_client", "services", "the SDK installs alone (httpx, pydantic, numpy)"),
    ("vjepa_robot_client", "vjepa_robot", "the SDK installs alone (httpx, pydantic, numpy)"),
]
# Third-party packages some parts must never import, even inside a function.
FORBIDDEN_THIRD_PARTY = [
    ("services.encoder", TRAINER_STACK),
    ("services.common", TRAINER_STACK),
    ("vjepa_robot_client", (*TRAINER_STACK, "torch", "transformers", "lancedb", "lance", "fastapi", "uvicorn")),
]


def test_no_forbidden_imports():
    bad = []
    for importer, edges in _graph().items():
        for imported, line in edges:
            for src, dst, why in FORBIDDEN:
                # vjepa_robot_client and vjepa_robot_lab are top-level packages of their own, not part of vjepa_robot
                if _is(importer, src) and _is(imported, dst):
                    bad.append(f"{importer}:{line} imports {imported} ({why})")
            for src, third in FORBIDDEN_THIRD_PARTY:
                if _is(importer, src) and imported.split(".")[0] in third:
                    bad.append(f"{importer}:{line} imports {imported}")
    assert not bad, "\n".join(bad)


KIND_NAMES = {"bc", "sac", "baseline"}
REGISTRY = "vjepa_robot_lab.records.run_kinds"


def _kind_expr(node: ast.expr) -> bool:
    """`x.kind`, `x["kind"]`, `x.get("kind")` or a name `kind`."""
    if isinstance(node, ast.Attribute) and node.attr == "kind":
        return True
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "kind":
        return True
    if isinstance(node, ast.Name) and node.id in ("kind", "kind_name"):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "kind"
    )


def _kind_switches(tree: ast.AST) -> list[int]:
    """Lines comparing a run's kind with a literal kind name (==, !=, in, not in)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        names = set()
        for side in sides:
            if isinstance(side, ast.Constant) and isinstance(side.value, str):
                names.add(side.value)
            elif isinstance(side, (ast.Tuple, ast.List, ast.Set)):
                names |= {e.value for e in side.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        if names & KIND_NAMES and any(_kind_expr(side) for side in sides):
            lines.append(node.lineno)
    return lines


def test_no_kind_switches_outside_the_registry():
    bad = [
        f"{module}:{line}"
        for module, path in _modules().items()
        if module != REGISTRY
        for line in _kind_switches(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert not bad, f"compare a kind with a name here; ask its hooks in {REGISTRY} instead: {bad}"


def test_the_kind_switch_finder_finds_switches():
    code = 'a = r.kind == "sac"\nb = run.get("kind") in ("bc", "x")\nc = "baseline" != rec["kind"]\nd = r.kind == k'
    assert _kind_switches(ast.parse(code)) == [1, 2, 3]


def _cycles(internal: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: every component of more than one module is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in internal.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in internal:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    graph = _graph()
    internal = {m: sorted({i for i, _ in edges if i in graph and i != m}) for m, edges in graph.items()}
    cycles = _cycles(internal)
    assert not cycles, f"import cycles (module-level or inside functions): {cycles}"


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def test_the_graph_reader_sees_relative_and_function_level_imports():
    graph = _graph()
    assert "vjepa_robot_lab.envs.env" in {
        m for m, _ in graph["vjepa_robot_lab.perception.features"]
    }  # from .env import ...
    assert "vjepa_robot_lab.data.datasets" in {m for m, _ in graph["vjepa_robot.cli"]}  # inside a command function
    assert "vjepa_robot_lab._gl" in {m for m, _ in graph["services.trainer"]}  # from vjepa_robot_lab import _gl
    assert "vjepa_robot_lab.learning.sac_checkpoint" in {m for m, _ in graph["vjepa_robot_lab.learning.sac"]}


# ----------------------------------------------------------------------------------------------------------------
# The store is the only door to LanceDB
# ----------------------------------------------------------------------------------------------------------------

LANCE_CALLS = {"create_table", "open_table", "drop_table", "to_lance", "connect"}
TABLE_PREFIXES = ("steps__", "emb__")
TABLE_HELPERS = {"steps_table_name", "embeddings_table_name", "DATASETS_TABLE"}  # table names, spelled by the store


def test_only_the_store_touches_lancedb():
    files = [p for top in ("services", "vjepa_robot", "deploy", "clients") for p in sorted((ROOT / top).rglob("*.py"))]
    bad = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "services/common/store.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if isinstance(node, ast.Import):
                bad += [
                    f"{rel}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] in ("lancedb", "lance")
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("lancedb", "lance"):
                bad.append(f"{rel}:{node.lineno} imports from {node.module}")
            elif isinstance(node, ast.Attribute):
                if node.attr in LANCE_CALLS - {"connect"}:
                    bad.append(f"{rel}:{node.lineno} calls .{node.attr}")
                if node.attr == "db" and isinstance(node.value, ast.Name) and "store" in node.value.id.lower():
                    bad.append(f"{rel}:{node.lineno} reaches into {node.value.id}.db")
            elif isinstance(node, ast.Constant) and str(node.value).startswith(TABLE_PREFIXES):
                bad.append(f"{rel}:{node.lineno} spells a table name {node.value!r}")
            elif isinstance(node, ast.Name) and node.id in TABLE_HELPERS:
                bad.append(f"{rel}:{node.lineno} uses {node.id}")
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bstore\.(open|drop|db|has_table|table_names)\b", line):
                bad.append(f"{rel}:{i} reaches past the store's methods: {line.strip()}")
    assert not bad, "outside services/common/store.py:\n" + "\n".join(bad)


def test_the_store_keeps_its_promises(tmp_path):
    """Episodes and embeddings go in through the store; THE completeness rule is the store's."""
    import numpy as np
    from conftest import write_steps_dataset

    from services.common.store import EmbeddingLineage, Store

    store = Store(str(tmp_path / "store"))
    write_steps_dataset(store, "d", episodes=2, steps=5, image_size=16)
    assert store.count_steps("d") == 10 and store.episodes_present("d") == {0, 1}
    lineage = EmbeddingLineage(encoder_id="enc-a", model="stand-in", preprocessing="none", dim=4)
    assert not store.embedding_progress("d", "enc-a").complete
    store.append_embeddings("d", 0, np.arange(5), np.ones((5, 4), np.float32), lineage)
    progress = store.embedding_progress("d", "enc-a")
    assert (progress.done, progress.total, progress.complete) == (5, 10, False)
    store.append_embeddings("d", 1, np.arange(5), np.zeros((5, 4), np.float32), lineage)
    assert store.embedding_progress("d", "enc-a").complete
    assert not store.embedding_progress("d", "enc-b").complete  # per encoder
    with pytest.raises(ValueError, match="expected"):
        store.append_embeddings("d", 2, np.arange(5), np.zeros((4, 4), np.float32), lineage)
    ep, st, x = store.read_embeddings("d", "enc-a")
    assert x.shape == (10, 4) and ep.tolist() == [0] * 5 + [1] * 5 and st.tolist() == list(range(5)) * 2
    store.drop_dataset("d")
    assert store.count_steps("d") == 0 and store.list_datasets() == []
    with pytest.raises(KeyError):
        store.embedding_progress("d", "enc-a")


# ----------------------------------------------------------------------------------------------------------------
# One vocabulary, one answer
# ----------------------------------------------------------------------------------------------------------------


def test_both_services_answer_422_for_a_bad_dataset_name(tmp_path):
    from conftest import ToyEncoder
    from fastapi.testclient import TestClient

    from services.encoder.app import create_app as create_encoder
    from services.encoder.settings import EncoderSettings
    from services.trainer.app import TrainerSettings
    from services.trainer.app import create_app as create_trainer

    bad = "bad name!"
    encoder = create_encoder(EncoderSettings(store=str(tmp_path / "store")), encoder=ToyEncoder())
    trainer = create_trainer(TrainerSettings(store=str(tmp_path / "store"), runs=str(tmp_path / "runs")))
    with TestClient(encoder) as enc, TestClient(trainer) as tr:
        answers = {
            "encoder GET": enc.get(f"/datasets/{bad}/encode"),
            "encoder POST": enc.post(f"/datasets/{bad}/encode"),
            "trainer GET": tr.get(f"/datasets/{bad}"),
            "trainer POST": tr.post("/datasets", json={"name": bad, "episodes": 1, "steps": 10}),
        }
    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 422)
    assert all("dataset name" in r.text or "name" in r.text for r in answers.values())


def test_vocabularies_come_from_the_contract():
    from vjepa_robot_client.contract import ACTION_DIM, EXPERTS, TASKS, BaselineEvalRequest, check_action_repeat
    from vjepa_robot_lab.data.datasets import DatasetSpec
    from vjepa_robot_lab.policies import experts

    assert tuple(experts._REGISTRY) == EXPERTS
    assert BaselineEvalRequest.model_json_schema()["properties"]["policy"]["enum"] == list(EXPERTS)
    for name in EXPERTS:
        assert experts.make_expert(name).name == name
    for task in TASKS:  # the scripted jacobian expert is reacher's; random acts on every task
        DatasetSpec(name="ok", task=task, expert="jacobian" if task in ("easy", "hard") else "random")
    with pytest.raises(ValueError, match="choose one of easy, hard"):
        DatasetSpec(name="ok", task="medium")
    assert ACTION_DIM == 2 and check_action_repeat(1000, 4) == 250
    with pytest.raises(ValueError, match="multiple of action_repeat"):
        check_action_repeat(1002, 4)
