"""``python -m milr.export``: the command's documented name; the exporters are ``milr.results.export``."""

from milr.results.export import main

if __name__ == "__main__":
    main()
