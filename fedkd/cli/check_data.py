"""``fedkd check-data DIR [--transfer DIR]``: a data owner's first command, offline.

    fedkd check-data /srv/hospital-data --transfer /srv/fedkd/transfer   # one node's folder
    fedkd check-data fed-data                                            # a `fedkd export` folder: every node

Prints every problem at once, each with its file, then a summary per node (images per class, image sizes and
modes, classes it has no images of). Exit status 0 when there is no problem, 1 otherwise; nothing is changed.
"""
from __future__ import annotations

from collections import Counter

__all__ = ["add_arguments", "cmd_check_data", "describe"]


def add_arguments(p) -> None:
    """The ``fedkd check-data`` options (called by ``fedkd.cli.build_parser``)."""
    p.add_argument("path", metavar="DIR", help="one node's folder (train/, test/) or a folder of node-<i>/ folders "
                                               "as `fedkd export` writes")
    p.add_argument("--transfer", metavar="DIR", help="the transfer set (classes.txt + images or transfer.npz); "
                                                     "default: transfer/ in DIR, or beside the node folder")
    p.add_argument("--image-size", metavar="HxW", help="the run's image_size: resize every image (transfer set "
                                                       "included) to it")
    p.add_argument("--resize", action="store_true", help="resize node images to the transfer set's size "
                                                         "(a node's --node-config image-size)")
    p.add_argument("--allow-symlinks", action="store_true", help="follow links out of a node's folder")
    p.add_argument("--all", action="store_true", help="one line per problem even when many files share one "
                                                    "(default: 3 examples and the count)")
    p.add_argument("--quiet", action="store_true", help="print only the problems")


def cmd_check_data(args) -> int:
    from fedkd.config import ConfigError
    from fedkd.data.check import check_data
    from fedkd.data.transfer import parse_image_size

    try:
        size = parse_image_size(args.image_size, "--image-size")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check = check_data(args.path, transfer_dir=args.transfer, image_size=size, resize=args.resize,
                       allow_symlinks=args.allow_symlinks)
    print(describe(check, summary=not args.quiet, every=args.all))
    return 0 if check.ok else 1


def describe(check, summary: bool = True, every: bool = False) -> str:
    """The report: every problem, then (with ``summary``) the transfer set and one paragraph per node."""
    problems = check.all_problems
    lines = [f"{len(problems)} problem(s):"] + [f"  {p}" for p in _grouped(problems, every)] if problems else []
    if summary and check.transfer is not None:
        t = check.transfer
        c, h, w = t.input_shape
        lines.append(f"transfer set {t.path}: {len(t.x)} images of {h}x{w}, {c} channel(s), {t.num_classes} classes "
                     f"(classes.txt order = label index), fingerprint {t.fingerprint}")
    if summary:
        for name, scan in check.nodes.items():
            lines.append(f"{name} ({scan.path}): {'OK' if scan.ok else f'{len(scan.problems)} problem(s)'}")
            for split, s in scan.splits.items():
                order = check.transfer.classes if check.transfer is not None else sorted(s.counts)
                per_class = ", ".join(f"{k} {s.counts[k]}" for k in order if s.counts.get(k)) or "none"
                skipped = f"; {s.ignored} system file(s) skipped" if s.ignored else ""
                lines.append(f"  {split}: {s.images} images ({per_class}); size {_counts(s.sizes)}; "
                             f"mode {_counts(s.modes)}{skipped}")
            if check.transfer is not None and "train" in scan.splits:
                missing = scan.missing_classes(check.transfer.classes)
                if missing:
                    lines.append(f"  classes with no training image: {', '.join(missing)}")
    bad = sum(1 for scan in check.nodes.values() if not scan.ok)
    verdict = (f"{len(problems)} problem(s)" + (f", in {bad} of {len(check.nodes)} node folder(s)" if bad else "")
               + "; fix them and run `fedkd check-data` again") if problems else \
        f"no problems in {len(check.nodes)} node folder(s)"
    lines.append(verdict)
    return "\n".join(lines)


def _grouped(problems: list[str], every: bool, examples: int = 3) -> list[str]:
    """Problems in order; a problem that many files share (e.g. 400 images of another size) is shown with
    ``examples`` of its files and the count, unless ``every``."""
    if every:
        return problems
    groups: dict[str, list[str]] = {}
    for p in problems:
        path, _, what = p.partition(": ")
        groups.setdefault(what, []).append(path)
    lines = []
    for what, paths in groups.items():
        if len(paths) <= examples + 1:
            lines += [f"{path}: {what}" for path in paths]
        else:
            lines += [f"{path}: {what}" for path in paths[:examples]]
            lines.append(f"... and {len(paths) - examples} more file(s) with the same problem (--all lists each)")
    return lines


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counter.most_common()) or "-"

