"""The fleet's hosts: each worker, its chip, memory and devices, what it measures now, its queue;
and the latest fleet run's variants side by side across hosts, with ratios to the fastest.

Everything comes from the store (the process running the fleet sweep writes the ``hosts`` table
as its workers report), read again every second: the app never talks to Dask itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from qbench_tui.analysis import fmt_num, latency
from qbench_tui.fleet_view import HOST_COLUMNS, host_row

REFRESH_S = 1.0


def across_hosts(results: list[dict[str, Any]], hosts: list[str]) -> list[tuple[str, dict[str, float | None]]]:
    """(variant, {host: p50}) for every variant of a run, in the run's order."""
    rows: dict[str, dict[str, float | None]] = {}
    for r in results:
        name = f"{r.get('label') or r['method']} · {r['runtime']} · {r['device']} · bs {r['batch_size']}"
        rows.setdefault(name, {h: None for h in hosts})[r.get("host") or "?"] = (
            latency(r) if r["status"] == "ok" else None)
    return list(rows.items())


class HostsScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,h", "dismiss", "Close")]

    def __init__(self, store: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.store = store

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="hosts-dialog") as dialog:
            dialog.border_title = "fleet hosts"
            dialog.border_subtitle = "escape closes · `qbench worker --scheduler …` adds a host"
            yield DataTable(id="hosts-table", cursor_type="row", zebra_stripes=False)
            with VerticalScroll():
                yield Static("", id="hosts-compare")

    def on_mount(self) -> None:
        table = self.query_one("#hosts-table", DataTable)
        for column in HOST_COLUMNS:
            table.add_column(column, key=column)
        self.refresh_hosts()
        self.set_interval(REFRESH_S, self.refresh_hosts)

    def refresh_hosts(self) -> None:
        hosts = self.store.hosts() if self.store is not None else []
        table = self.query_one("#hosts-table", DataTable)
        table.clear()
        for h in hosts:
            table.add_row(*host_row(h), key=h["name"])
        self.query_one("#hosts-compare", Static).update(self._compare(hosts))

    def _compare(self, hosts: list[dict[str, Any]]) -> Content:
        if not hosts:
            return Content.from_markup("[$text-muted]No fleet hosts recorded yet: start `qbench scheduler`, "
                                       "`qbench worker --scheduler tcp://HOST:8786 --name NAME` on each machine, "
                                       "then `qbench run … --cluster tcp://HOST:8786`.[/]")
        run_id = max((h.get("run_id") or "" for h in hosts), default="")
        results = self.store.results(run_id) if run_id else []
        names = sorted({r.get("host") or "?" for r in results})
        if not results:
            return Content("")
        out = [Content.from_markup("[b $text-accent]Run $r across hosts[/] (p50 ms; ×: slower than the fastest host)",
                                   r=run_id),
               Content.from_markup("[b]$h[/]", h=f"{'variant':<38}" + "".join(f"{n[:14]:>16}" for n in names))]
        for variant, p50s in across_hosts(results, names):
            best = min((v for v in p50s.values() if v), default=None)
            cells = []
            for n in names:
                v = p50s.get(n)
                ratio = f" ×{v / best:.2f}" if v and best else ""
                cells.append(f"{fmt_num(v) + ratio:>16}")
            out.append(Content(f"{variant[:37]:<38}" + "".join(cells)))
        return Content("\n").join(out)
