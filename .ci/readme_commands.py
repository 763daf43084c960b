"""Print the README's set-up commands, one per line: the non-comment lines of its first ```bash block."""

import re
import sys
from pathlib import Path

text = Path(sys.argv[1]).read_text()
block = re.search(r"```bash\n(.*?)```", text, re.S)
if block is None:
    sys.exit("README has no ```bash block")
for line in block.group(1).splitlines():
    if line.strip() and not line.lstrip().startswith("#"):
        print(line.strip())
