"""Records every Python process that starts with this folder on PYTHONPATH: at its exit, one JSON file
in $TIFKIT_PROCLOG with its arguments, multiprocessing name, CPU and wall seconds, and the files of the
modules it imported. A benchmark (bench/interpreters.py summarizes), never installed; processes killed
by a signal write nothing, and an environment that drops PYTHONPATH (the Colab test's) is not seen."""
import atexit
import json
import os
import sys
import time

_T0 = time.time()


def _record():
    out = os.environ.get("TIFKIT_PROCLOG")
    if not out:
        return
    try:
        import multiprocessing
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        files = sorted({f for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None))})
        rec = {"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv,
               "name": multiprocessing.current_process().name, "cpu": ru.ru_utime + ru.ru_stime,
               "wall": time.time() - _T0, "files": files}
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"{os.getpid()}-{int(_T0 * 1000)}.json"), "w") as f:
            json.dump(rec, f)
    except Exception:  # a measurement must never break the process it measures
        pass


atexit.register(_record)
