"""The registry as a child process for the app (which never imports MLflow)::

    python -m engines.tracking register --db PATH --uri URI RESULT_ID [--name N] [--alias A] [--format F]
    python -m engines.tracking registry --uri URI [--name N] [--where KEY=VALUE …]

Each prints one JSON line: the answer, or ``{"error": "…"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.tracking")
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register")
    reg.add_argument("result_id", type=int)
    reg.add_argument("--db", type=Path, required=True)
    reg.add_argument("--uri", required=True)
    reg.add_argument("--name")
    reg.add_argument("--alias")
    reg.add_argument("--format")
    lst = sub.add_parser("registry")
    lst.add_argument("--uri", required=True)
    lst.add_argument("--name")
    lst.add_argument("--where", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from engines.tracking import registry

    try:
        if args.command == "register":
            body = registry.register(args.db, args.result_id, args.uri, name=args.name, alias=args.alias,
                                     fmt=args.format)
        else:
            where = dict(item.partition("=")[::2] for item in args.where)
            body = {"versions": registry.list_versions(args.uri, name=args.name, where=where)}
    except registry.RegistryError as exc:
        body = {"error": str(exc)}
    print(json.dumps(body, default=str))
    return 0 if "error" not in body else 1


if __name__ == "__main__":
    sys.exit(main())
