"""``python -m milr.report``: the command's documented name; the report is ``milr.results.report``."""

from milr.results.report import main

if __name__ == "__main__":
    main()
