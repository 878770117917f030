"""``python -m engines.fleet.relay``: a fleet sweep in a process of its own, for the app.

The app's process never imports Dask; when its sweeps go to a fleet it starts this module, sends
the sweep request as JSON on stdin, and reads the run's events back as JSON lines on stdout (the
same events a :class:`~engines.bench.runner.SweepRunner` hands its listener). This process owns
the store's writes for the run (one writer), as ``qbench run --cluster`` does. SIGINT or SIGTERM
ends the sweep like Ctrl-C: recorded ``interrupted``, resumable.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict
from typing import Any


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def _event(event: Any) -> None:
    _emit({"event": type(event).__name__, **asdict(event)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.fleet.relay")
    parser.add_argument("--db", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--hosts")
    parser.add_argument("--resume")
    args = parser.parse_args(argv)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    from engines.bench.request import SweepRequest
    from engines.bench.runner import SweepInterrupted
    from engines.fleet import FleetError, security_from_env
    from engines.fleet.runner import FleetRunner, parse_hosts
    from engines.store import Store

    store = Store(args.db)
    try:
        runner = FleetRunner(store, args.cluster, parse_hosts(args.hosts), _event, source="tui",
                             security=security_from_env())
        if args.resume:
            outcome = runner.resume(args.resume)
        else:
            outcome = runner.run(SweepRequest.from_dict(json.loads(sys.stdin.read())))
        _emit({"outcome": outcome.status, "run_id": outcome.run_id})
    except (SweepInterrupted, KeyboardInterrupt) as exc:
        _emit({"outcome": "interrupted", "run_id": str(exc)})
    except (FleetError, ValueError, OSError) as exc:
        _emit({"outcome": "error", "error": str(exc)})
        return 2
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
