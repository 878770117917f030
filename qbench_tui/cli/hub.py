"""``qbench pull ORG/NAME``: download a model from the Hugging Face Hub into the user's HF cache.

The top level stays light (argparse only); the handler imports huggingface_hub through
:mod:`engines.models.pull`. Exit codes: 0 downloaded or already cached, 1 offline (and not
cached) or the download failed, 2 a malformed name or no such model.
"""

from __future__ import annotations

import sys

from qbench_tui.cli.common import EXIT_FAILED, EXIT_OK, UsageError


def add_parsers(sub) -> None:
    p = sub.add_parser("pull", help="download a model from the Hugging Face Hub into your HF cache")
    p.add_argument("repo_id", metavar="ORG/NAME", help="a Hub model, e.g. google/vit-base-patch16-224")
    p.add_argument("--revision", help="a branch, tag or commit (default: main)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_pull)


def cmd_pull(args) -> int:
    import json

    from engines.models.pull import PullError, PullOffline, PullUsageError, check_repo_id, pull

    try:
        check_repo_id(args.repo_id)
    except PullUsageError as exc:
        raise UsageError(str(exc)) from None
    progress = _Progress() if sys.stderr.isatty() and not args.json else None
    try:
        result = pull(args.repo_id, revision=args.revision, on_progress=progress)
    except PullUsageError as exc:
        raise UsageError(str(exc)) from None
    except PullOffline as exc:
        print(f"qbench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except PullError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return EXIT_OK
    how = "already cached" if result.cached else "downloaded"
    print(f"{result.repo_id}: {how}, {result.files} files, {result.size_mb:.1f} MB in {result.path} "
          f"({result.task}, family {result.family}); run it with: qbench run --model {result.repo_id} --methods fp32,dynamic-int8")
    return EXIT_OK


class _Progress:
    """One line on stderr, rewritten as the download goes."""

    def __call__(self, done: int, total: int, what: str) -> None:
        shown = f"{done}/{total}" if total else str(done)
        sys.stderr.write(f"\r{what or 'downloading'} {shown}"[:100].ljust(60))
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r" + " " * 60 + "\r")
        sys.stderr.flush()
