"""The old system's data-preparation command, running `ai2text prepare`.

    python scripts/prepare_data.py --csv_path data/metadata.csv --output_dir data/processed --validate

writes the version folder ``<output_dir>/<version>`` (default ``data/processed/v1``). Every other
``ai2text prepare`` option (``--strict``, ``--auto-split 0.9,0.05,0.05``, ``--num-proc`` ...) passes through.
"""

import argparse
import sys
from pathlib import Path

from ai2text_hf.cli import main


def guide_arguments(argv: list[str]) -> list[str]:
    """The old system's flags translated to `ai2text prepare` arguments; unknown ones are passed on unchanged."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any other option is an `ai2text prepare` option (see `ai2text prepare --help`).",
    )
    parser.add_argument(
        "--csv_path", required=True, help="Metadata CSV (file_path,transcript,duration,split,speaker_id)."
    )
    parser.add_argument(
        "--output_dir", default="data/processed", help="Folder of dataset versions (default data/processed)."
    )
    parser.add_argument("--version", default="v1", help="Version folder name under --output_dir (default v1).")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="Validate, then prepare. Always on: every row is checked before anything is written, and bad rows "
        "are skipped with the fix in report.json (add --strict to stop instead).",
    )
    args, passthrough = parser.parse_known_args(argv)
    return ["prepare", "--csv", args.csv_path, "--output", str(Path(args.output_dir) / args.version), *passthrough]


if __name__ == "__main__":
    sys.exit(main(guide_arguments(sys.argv[1:])))
