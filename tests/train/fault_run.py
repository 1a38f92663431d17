"""examples/train_char_lm.py with one fault at an exact point, for test_faults.py.

    python fault_run.py KIND N [train_char_lm.py flags ...]

The faults are real: the process kills itself (SIGKILL, as ``kill -9`` or a power cut would)
or sends itself Ctrl-C (SIGINT), or a file operation fails as on a full disk (ENOSPC).  "The
N-th replace" counts ``os.replace`` calls, the commit point of every file and state directory
a run writes, so the faults land inside saves as precisely as between them.

    kill-step N            SIGKILL while drawing the N-th training batch (inside an iteration)
    kill-before-replace N  SIGKILL just before the N-th replace (a save cut short)
    kill-after-replace N   SIGKILL just after it
    int-step N             Ctrl-C while drawing the N-th training batch
    int-update N           Ctrl-C inside the optimizer step, at its N-th parameter update
    int-eval N             Ctrl-C while drawing the N-th evaluation batch
    int-save N             Ctrl-C just before the N-th replace
    int-save-twice N       Ctrl-C before the N-th replace and again before the next one
    full-disk N            the N-th replace fails with "No space left on device"
"""
import errno
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

import tinygradlm as tg  # noqa: E402
import train_char_lm  # noqa: E402

kind, n = sys.argv[1], int(sys.argv[2])
counts = {"replace": 0, "train": 0, "eval": 0, "update": 0}
real_replace, real_get_batch, real_update = os.replace, tg.data.get_batch, tg.optim.Adam.update


def replace(src, dst):
    counts["replace"] += 1
    at = counts["replace"]
    if at == n and kind == "kill-before-replace":
        os.kill(os.getpid(), signal.SIGKILL)
    if at == n and kind == "full-disk":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
    if (at == n and kind.startswith("int-save")) or (at == n + 1 and kind == "int-save-twice"):
        os.kill(os.getpid(), signal.SIGINT)
    real_replace(src, dst)
    if at == n and kind == "kill-after-replace":
        os.kill(os.getpid(), signal.SIGKILL)


def get_batch(ids, batch_size, block_size, device="cpu", generator=None):
    split = "train" if generator is None else "eval"     # evaluation passes its own generator
    counts[split] += 1
    if counts[split] == n:
        if kind == "kill-step" and split == "train":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == ("int-step" if split == "train" else "int-eval"):
            os.kill(os.getpid(), signal.SIGINT)
    return real_get_batch(ids, batch_size, block_size, device, generator)


def update(self, p, g, state, group):
    counts["update"] += 1
    if counts["update"] == n and kind == "int-update":
        os.kill(os.getpid(), signal.SIGINT)
    real_update(self, p, g, state, group)


os.replace = replace
tg.data.get_batch = get_batch
tg.optim.Adam.update = update
train_char_lm.main(sys.argv[3:])
