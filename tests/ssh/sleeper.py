"""A stand-in program for the launcher tests: it prints the secret it was
given, starts a grandchild (``sleep``) in its process group, then waits."""

import os
import subprocess
import sys
import threading

if __name__ == "__main__":
    if sys.argv[1:] == ["exit"]:
        sys.exit(3)
    grandchild = subprocess.Popen(["sleep", "600"])
    print(f"token={os.environ.get('TASKMILL_TOKEN')} grandchild={grandchild.pid}", flush=True)
    threading.Event().wait()
