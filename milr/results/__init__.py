"""Results tooling: the run-folder layout (``layout``), its writer (``write``, ``summary``), its
readers (``runs``, ``official``), what keeps a folder trustworthy (``fingerprint``, ``lock``)
and the commands that read it (``export``, ``report``). No Lightning here."""
