"""The example library server, misbehaving on one start of several: for runs where one dialogue's server
fails and the others' do not.

Each start takes the next number from --counter (a file outside any sandbox); start number --on misbehaves
as --fault says: `no-start` exits before initialize, `crash` dies on its first tool call, `hang` never answers
it. Every other start is the plain library server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "mcp"))
import library_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counter", required=True)
    parser.add_argument("--on", type=int, required=True)
    parser.add_argument("--fault", choices=["no-start", "crash", "hang"], required=True)
    args, rest = parser.parse_known_args()
    counter = Path(args.counter)
    number = int(counter.read_text() or 0) + 1 if counter.exists() else 1
    counter.write_text(str(number))
    if number == args.on:
        if args.fault == "no-start":
            sys.exit("flaky library: cannot open its state (refusing to start)")

        def misbehave(self: library_server.Store) -> dict:
            if args.fault == "crash":
                sys.stderr.write("flaky library: segmentation fault\n")
                sys.stderr.flush()
                os._exit(139)
            time.sleep(3600)
            return {}
        library_server.Store.load = misbehave
    library_server.main(rest)


if __name__ == "__main__":
    main()
