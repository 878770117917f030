"""Schema migrations of the store. Each upgrades by one version; never edit a released one.

Version 1 (the first release): runs, results keyed by run × method × runtime × device × batch.
Version 2: results carry their recipe (id, label, steps), runtime config and passes; the unique
key becomes run × recipe × runtime × device × batch. Old rows get the recipe id their method and
settings have today, so old runs keep showing and ``--resume`` still finds what they measured.
Version 3: results carry the variant's own memory (``memory_mb``, per-phase ``memory``), their
timing rounds with the spread across them, and flags (unstable, under load, simulated); old rows
keep NULL memory and no rounds (they were measured once). Indexes for history at scale: the
columns the app and the CLI filter on, the fp32 reference of a variant's speed-up, and runs by
creation time.
Version 4: ``machine_profiles``, each machine's measured roofline (peak compute, memory bandwidth).
Version 5 (fleets): results carry the ``host`` that measured them (old rows: the host of the
process that ran their run), and the unique key becomes run × recipe × runtime × device × batch ×
host, so one run holds the same variant once per machine; a ``hosts`` table keeps each fleet
worker's facts and what it measures now (written by the process that owns the store).
Version 6: ``versions`` — each DVC version of a result's exported directory (its ``.dir`` md5, size,
file count, the ``.dvc`` file's text, the repository and remote), so any version can be restored
without git; ``monitor_baselines`` — a served variant's deployment baseline (latency and error
rate scraped from its own ``/metrics`` right after it was deployed).
Version 7: the tracking outbox. Each run start, result and run end bound for a tracking server
(MLflow) is queued in ``tracking_outbox`` in the same transaction that stores it, and marked sent
by the sender process; ``tracking_runs`` maps a qbench run to its MLflow run per tracking URI.
Version 8: ``results.search_text``, the words a typed filter matches (run, model, recipe, runtime,
device, status, error, notes, host, ``bs<N>``) joined by spaces, kept up to date by triggers, so a
filter word is one LIKE per row instead of eleven.
Version 9: ``results.energy``, a result's energy over its timed calls (joules per inference, watts,
the source, or why nothing could be read); old rows get ``{}`` (not measured).
Version 10: two read indexes for history at scale: ``results_model_fastest`` (a model's fastest
result of each variant, read from the index alone) and ``results_status_search`` (a typed
filter's counts per status and its newest-first page scan this index, a sixth of the table's
bytes). The query planner's statistics are gathered (and kept fresh as the store grows) by
``Store.refresh_stats`` at opening.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite_utils

LEGACY_RESULT_COLUMNS = (
    "id", "run_id", "model", "method", "runtime", "device", "batch_size", "status", "error", "config",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms", "latency_iqr_ms",
    "latency_min_ms", "latency_max_ms", "latency_samples", "throughput_per_s", "load_s", "quantize_s",
    "peak_rss_mb", "size_mb", "accuracy", "agreement_top1", "agreement_sqnr_db", "agreement_cosine", "metrics",
    "notes", "artifact", "runtime_info", "started_at", "finished_at",
)


def _migration_1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str, "created_at": str, "finished_at": str, "status": str, "model": str,
            "request": str, "environment": str, "pid": int, "host": str, "source": str, "message": str,
        },
        pk="id",
    )
    columns: dict[str, Any] = {name: str for name in LEGACY_RESULT_COLUMNS}
    columns.update({"id": int, "batch_size": int})
    columns.update({c: float for c in LEGACY_RESULT_COLUMNS if c.startswith(("latency_", "agreement_"))})
    columns.update({c: float for c in ("throughput_per_s", "load_s", "quantize_s", "peak_rss_mb", "size_mb",
                                       "accuracy")})
    db["results"].create(columns, pk="id", foreign_keys=[("run_id", "runs", "id")])
    db["results"].create_index(["run_id", "method", "runtime", "device", "batch_size"], unique=True)
    db["results"].create_index(["model"])


def legacy_recipe(method: str, config_json: str | None) -> tuple[str, str, str]:
    """(recipe id, label, steps JSON) of a version-1 row; settings this release dropped are ignored."""
    from engines.methods.recipe import Recipe

    config = json.loads(config_json or "{}")
    try:
        recipe = Recipe.from_list([{"method": method, "config": config}], lenient=True)
    except ValueError:  # a method this release no longer has: keep the row, keyed by its name
        return method, method, json.dumps([{"method": method, "config": config}])
    return recipe.id, recipe.label, json.dumps(recipe.to_list())


def _migration_2(db: sqlite_utils.Database) -> None:
    results = db["results"]
    for name in ("recipe_id", "label", "recipe", "runtime_config", "passes"):
        results.add_column(name, str)
    rows = list(db.execute("SELECT id, method, config FROM results").fetchall())
    for row_id, method, config in rows:
        recipe_id, label, steps = legacy_recipe(method, config)
        db.execute("UPDATE results SET recipe_id = ?, label = ?, recipe = ?, runtime_config = '{}', passes = '[]' "
                   "WHERE id = ?", [recipe_id, label, steps, row_id])
    db.execute("DROP INDEX IF EXISTS idx_results_run_id_method_runtime_device_batch_size")
    results.create_index(["run_id", "recipe_id", "runtime", "device", "batch_size"], unique=True)
    results.create_index(["status"])
    results.create_index(["finished_at"])


def _migration_3(db: sqlite_utils.Database) -> None:
    results = db["results"]
    existing = set(results.columns_dict)
    for name, kind in (("memory_mb", float), ("spread", float), ("memory", str), ("rounds", str), ("flags", str)):
        if name not in existing:  # idempotent: a file re-opened after an interrupted upgrade
            results.add_column(name, kind)
    db.execute("UPDATE results SET memory = '{}', rounds = '[]', flags = '[]'")
    # Filters (model has its index since version 1, status and finished_at since 2).
    for column in ("method", "label", "runtime", "device"):
        results.create_index([column], if_not_exists=True)
    # A variant's float reference: same run, the reference's method, runtime, device, batch size.
    results.create_index(["run_id", "method", "runtime", "device", "batch_size"],
                         index_name="results_fp32_reference", if_not_exists=True)
    db["runs"].create_index(["created_at"], if_not_exists=True)


def _migration_machine_profiles(db: sqlite_utils.Database) -> None:
    """The machine's roofline (engines.analysis.roofline): peak compute and bandwidth, measured once
    per host, kept with the time and method of the measurement."""
    db["machine_profiles"].create({"id": int, "host": str, "measured_at": str, "peak_gflops": float,
                                   "bandwidth_gbs": float, "details": str}, pk="id", if_not_exists=True)
    db["machine_profiles"].create_index(["host", "measured_at"], if_not_exists=True)


def _migration_fleet(db: sqlite_utils.Database) -> None:
    results = db["results"]
    if "host" not in set(results.columns_dict):
        results.add_column("host", str)
    db.execute("UPDATE results SET host = (SELECT runs.host FROM runs WHERE runs.id = results.run_id) "
               "WHERE host IS NULL")
    db.execute("DROP INDEX IF EXISTS idx_results_run_id_recipe_id_runtime_device_batch_size")
    results.create_index(["run_id", "recipe_id", "runtime", "device", "batch_size", "host"], unique=True,
                         index_name="results_variant_host", if_not_exists=True)
    results.create_index(["host"], if_not_exists=True)
    if "hosts" not in db.table_names():
        db["hosts"].create({"name": str, "address": str, "facts": str, "state": str, "activity": str,
                            "queue": str, "run_id": str, "seen_at": str}, pk="name")


def _migration_versions(db: sqlite_utils.Database) -> None:
    # Not a foreign key to results: a version (bytes in a DVC remote) outlives a pruned result row.
    db["versions"].create(
        {
            "id": int, "result_id": int, "created_at": str, "format": str, "md5": str, "size": int,
            "nfiles": int, "path": str, "repo": str, "remote": str, "dvcfile": str, "source": str,
        },
        pk="id", if_not_exists=True,
    )
    db["versions"].create_index(["result_id"], if_not_exists=True)
    db["versions"].create_index(["md5"], if_not_exists=True)
    db["monitor_baselines"].create(
        {"id": int, "url": str, "result_id": int, "created_at": str, "requests": int, "latency_mean_ms": float,
         "latency_p95_ms": float, "error_rate": float, "data": str},
        pk="id", if_not_exists=True,
    )
    db["monitor_baselines"].create_index(["url"], if_not_exists=True)


def _migration_tracking(db: sqlite_utils.Database) -> None:
    # No foreign key to results: a resumed run replaces a result row, and its queued entry must
    # not block that (the sender skips an entry whose result is gone).
    db["tracking_outbox"].create(
        {"id": int, "uri": str, "kind": str, "run_id": str, "result_id": int, "created_at": str,
         "state": str, "attempts": int, "last_error": str, "sent_at": str, "mlflow_run_id": str},
        pk="id", not_null={"uri", "kind", "run_id", "state"}, defaults={"state": "queued", "attempts": 0},
        if_not_exists=True,
    )
    db["tracking_outbox"].create_index(["state", "uri"], if_not_exists=True)
    db["tracking_outbox"].create_index(["result_id"], if_not_exists=True)
    db["tracking_runs"].create(
        {"uri": str, "run_id": str, "experiment_id": str, "mlflow_run_id": str, "created_at": str},
        pk=("uri", "run_id"), if_not_exists=True,
    )


# What a typed filter searches, one field after another, joined by spaces: a filter word has no
# space, so it matches the joined text exactly when it matches one of the fields (LIKE is ASCII
# case-insensitive either way, so the text is kept as written). NULLs become '' (they match nothing).
SEARCH_COLUMNS = ("run_id", "model", "label", "method", "runtime", "device", "status", "error", "notes", "host")


def search_text_sql(row: str) -> str:
    """The search text of one ``results`` row, its columns read from ``row`` (``NEW`` in a trigger)."""
    parts = [f"COALESCE({row}.{c}, '')" for c in SEARCH_COLUMNS] + [f"COALESCE('bs' || {row}.batch_size, '')"]
    return " || ' ' || ".join(parts)


def _migration_search_text(db: sqlite_utils.Database) -> None:
    # Triggers rather than the store's writes: rows inserted by any path (insert_all, a resumed
    # run's replacement, an update of status or error) stay searchable.
    if "search_text" not in set(db["results"].columns_dict):
        db["results"].add_column("search_text", str)
    columns = ", ".join((*SEARCH_COLUMNS, "batch_size"))
    fill = f"UPDATE results SET search_text = {search_text_sql('NEW')} WHERE id = NEW.id;"
    db.execute(f"CREATE TRIGGER IF NOT EXISTS results_search_insert AFTER INSERT ON results BEGIN {fill} END")
    db.execute(f"CREATE TRIGGER IF NOT EXISTS results_search_update AFTER UPDATE OF {columns} ON results "
               f"BEGIN {fill} END")
    db.execute(f"UPDATE results SET search_text = {search_text_sql('results')}")


def _migration_energy(db: sqlite_utils.Database) -> None:
    if "energy" not in set(db["results"].columns_dict):
        db["results"].add_column("energy", str)
    db.execute("UPDATE results SET energy = '{}' WHERE energy IS NULL")


# The columns of a model's fastest result per variant (Store.model_summary): model, status, the
# variant (recipe id or method, runtime, device, batch size) and p50, so SQLite never reads a row.
FASTEST_INDEX = ("model", "status", "recipe_id", "method", "runtime", "device", "batch_size", "latency_p50_ms")


# What a typed filter reads of each row: its counts per status, and its newest-first page (the run
# and the result's own time), so its scan reads this index and never the rows (5 ms, not 22 ms,
# for a word that 5,000 of 20,000 results match).
SEARCH_INDEX = ("status", "search_text", "run_id", "started_at")


def _migration_read_indexes(db: sqlite_utils.Database) -> None:
    db["results"].create_index(FASTEST_INDEX, index_name="results_model_fastest", if_not_exists=True)
    db["results"].create_index(SEARCH_INDEX, index_name="results_status_search", if_not_exists=True)
    # The planner's statistics: Store.refresh_stats, right after the migrations.


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1, _migration_2, _migration_3, _migration_machine_profiles, _migration_fleet, _migration_versions,
    _migration_tracking, _migration_search_text, _migration_energy, _migration_read_indexes,
]
SCHEMA_VERSION = len(MIGRATIONS)
