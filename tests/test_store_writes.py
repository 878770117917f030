"""The store owns every write: no module outside ``engines/store`` runs SQL that changes a table
(INSERT / UPDATE / DELETE / REPLACE) or calls sqlite-utils' writing methods on a store table.
Read from the source with ``ast`` (nothing is imported), so a new raw write anywhere fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "engines" / "store"
WRITE_SQL = re.compile(r"^\s*(INSERT\s+(OR\s+\w+\s+)?INTO|REPLACE\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b",
                       re.IGNORECASE)
TABLE_WRITES = {"insert", "insert_all", "upsert", "upsert_all", "update", "delete", "delete_where", "drop"}


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, holes as "?"
        return "".join(v.value if isinstance(v, ast.Constant) else "?" for v in node.values)
    return None


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else path.name


def _writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        text = _text(node)
        if text is not None and WRITE_SQL.search(text):
            found.append(f"{_rel(path)}:{node.lineno} SQL {text.split()[0].upper()}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in TABLE_WRITES
                and isinstance(node.func.value, ast.Subscript)):
            table = node.func.value.value  # db["table"].insert(...) / store.db["table"].insert(...)
            if (isinstance(table, ast.Name) and table.id == "db") or (
                    isinstance(table, ast.Attribute) and table.attr == "db"):
                found.append(f"{_rel(path)}:{node.lineno} table.{node.func.attr}")
        if isinstance(node, ast.Attribute) and node.attr == "executescript":
            found.append(f"{_rel(path)}:{node.lineno} executescript")
    return list(dict.fromkeys(found))  # an f-string's literal parts are nodes of their own


def _sources() -> list[Path]:
    # The product's modules; bench/ scripts may fill a scratch store of their own to time it.
    return [p for pkg in ("engines", "qbench_tui") for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_no_module_outside_the_store_writes_a_table():
    offenders = [w for p in _sources() if STORE not in p.parents for w in _writes(p)]
    assert offenders == [], "writes belong in engines/store (a function there with a clear name): " + "; ".join(
        offenders)


def test_the_check_sees_the_stores_own_writes(tmp_path):
    inside = [w for p in sorted(STORE.rglob("*.py")) for w in _writes(p)]
    assert any(" SQL INSERT" in w for w in inside) and any(" SQL UPDATE" in w for w in inside)
    assert any("table.insert" in w for w in inside)
    sample = tmp_path / "sample.py"
    sample.write_text('def f(conn, store, t):\n    conn.execute(f"delete from {t} where id = ?")\n'
                      '    store.db["x"].upsert({})\n    """Update the figures."""\n')
    assert sorted(w.split(" ", 1)[1] for w in _writes(sample)) == ["SQL DELETE", "table.upsert"]
