"""``python -m taskmill``: the ``taskmill`` command (:mod:`taskmill.cli.umbrella`)."""

from taskmill.cli.umbrella import main

if __name__ == "__main__":
    main(prog_name="taskmill")
