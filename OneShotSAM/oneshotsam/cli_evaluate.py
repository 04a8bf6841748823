"""``oneshotsam evaluate --predictions DIR|FILE... --ground-truth DIR|FILE... [--labels 1 2 3] [--json OUT]``.

Pairs label files of the two folders by file stem (:func:`oneshotsam.evaluate.pair_by_stem`:
``case01.png`` with ``case01.png``, ``patient001_ED.nii.gz`` with
``patient001_ED_label.nii.gz``), prints Dice and IoU per class, per case and
their means (mean over classes, then over cases), and writes the table as JSON
(never over a prediction or ground-truth file). Grey images given as predictions
are refused (:func:`oneshotsam.evaluate.check_label_map`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from oneshotsam.errors import OneShotError


def run(args: argparse.Namespace) -> int:
    from oneshotsam.evaluate import evaluate_pairs, format_table, to_json
    for opt, items in (("--predictions", args.predictions), ("--ground-truth", args.ground_truth)):
        for item in items:
            if not Path(item).exists():
                raise OneShotError(f"{opt} {item} not found")
    if args.json:
        from oneshotsam.writer import check_not_inputs

        check_not_inputs([Path(args.json)], [*args.predictions, *args.ground_truth], "--json")
    table = evaluate_pairs([Path(p) for p in args.predictions],
                           [Path(p) for p in args.ground_truth], labels=args.labels)
    print(format_table(table))
    if args.json:
        to_json(table, Path(args.json))
    return 0
