"""What the dataset card costs a push: exports alone against the whole dry-run push.

    python benchmarks/push_card.py [--sizes 1000,5000] [--formats trl,math-shepherd,dpo-trl]

For each size, a synthetic run folder (the trees of ``benchmarks/memory.py``,
about 12 kB a question) is exported to each format with a 10% validation
split by ``export_file``, then pushed with ``--dry-run`` (the same exports,
plus what the card needs: the features derived from each schema, checked
against every record, one record per config, the run's files), and the
card's own work, the features read from every pushed record, is timed on its
own.  Nothing is uploaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,5000", help="questions per run, comma-separated")
    parser.add_argument("--formats", default="trl,math-shepherd,dpo-trl")
    args = parser.parse_args()
    from memory import write_shard

    from prmsynth import ExportSettings, export_file, push
    from prmsynth.export._formats import load_schema
    from prmsynth.publish._features import features_from_schema

    formats = args.formats.split(",")
    settings = ExportSettings(validation_fraction=0.1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="prmsynth-push-bench-") as scratch:
        for size in map(int, args.sizes.split(",")):
            run = Path(scratch) / f"run-{size}"
            write_shard(run, 0, 1, 0, size)
            exports = Path(scratch) / f"exports-{size}"
            exports.mkdir()
            started = time.perf_counter()
            records = 0
            for format in formats:
                manifest = export_file(
                    run / "trees.jsonl", format, exports / f"{format}.jsonl", settings
                )
                records += manifest["counts"]["records_written"]
            exported = time.perf_counter() - started
            started = time.perf_counter()
            push(
                run,
                "me/bench",
                formats=formats,
                settings=settings,
                dry_run=True,
                folder=Path(scratch) / f"push-{size}",
            )
            pushed = time.perf_counter() - started
            started = time.perf_counter()
            for format in formats:
                files = sorted((Path(scratch) / f"push-{size}" / format).glob("*.jsonl"))
                lines = (line for path in files for line in path.open(encoding="utf-8"))
                features_from_schema(load_schema(format), map(json.loads, lines))
            features = time.perf_counter() - started
            rows.append((size, records, exported, pushed, features))
    print(f"formats: {', '.join(formats)}")
    print("| questions | records | exports (s) | dry-run push (s) | features (s) | share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size, records, exported, pushed, features in rows:
        share = features / pushed
        print(
            f"| {size} | {records} | {exported:.2f} | {pushed:.2f} | {features:.2f} | {share:.0%} |"
        )


if __name__ == "__main__":
    main()
