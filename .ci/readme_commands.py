"""Print README commands, one per line: by default the set-up commands (the non-comment lines of
its first ```bash block); with ``--distributed`` every torchrun / srun line of its ```bash blocks."""

import re
import sys
from pathlib import Path

text = Path(sys.argv[1]).read_text()
blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
if not blocks:
    sys.exit("README has no ```bash block")
lines = [line.strip() for block in (blocks if "--distributed" in sys.argv else blocks[:1]) for line in block.splitlines()]
for line in lines:
    if line and not line.startswith("#") and ("--distributed" not in sys.argv or line.startswith(("torchrun ", "srun "))):
        print(line)
