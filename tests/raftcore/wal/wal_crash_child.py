"""Child process of test_wal_crash.py: applies OpGen(seed)'s operations to a DiskStorage
forever, writing the number of each acknowledged (returned) operation to stdout, until
it is killed. Usage: wal_crash_child.py DIR SEED SEGMENT_SIZE"""

from __future__ import annotations

import os
import random
import sys

from raftcore.wal import DiskStorage
from wal_testutil import OpGen, apply


def main() -> None:
    path, seed, seg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    st = DiskStorage.open(path, segment_size=seg)
    gen = OpGen(random.Random(seed), max_batch=40, max_data=200)
    os.write(1, b"ready\n")
    k = 0
    while True:
        apply(st, gen.next(st))
        k += 1
        os.write(1, b"%d\n" % k)


if __name__ == "__main__":
    main()
