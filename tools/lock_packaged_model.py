"""Write a packaged model's files (size, sha256) into its models.lock entry.

    python tools/lock_packaged_model.py tcodec-taco-v1

Run after `python -m tcodec.train CONFIG --export NAME`; `tcodec models verify NAME`
and tests/test_weights.py then hold the package to those hashes.
"""

import re
import sys
from pathlib import Path

from tcodec.weights import CONFIG_FILE, WEIGHTS_FILE, model_folder, sha256_file

LOCK = Path(__file__).resolve().parent.parent / "models.lock"


def main(name: str) -> None:
    folder = model_folder(name)
    lines = "".join(f'  {{ path = "{f}", size = {(folder / f).stat().st_size}, sha256 = "{sha256_file(folder / f)}" }},\n'
                    for f in (CONFIG_FILE, WEIGHTS_FILE))
    text = LOCK.read_text(encoding="utf-8")
    entry = re.compile(r'(name = "' + re.escape(name) + r'"\n(?:(?!\[\[model\]\]).*\n)*?)files = \[(?:\n.*?)*?\]\n')
    new, count = entry.subn(lambda m: m.group(1) + "files = [\n" + lines + "]\n", text, count=1)
    if count != 1:
        sys.exit(f"no entry for {name} with a files list in {LOCK}")
    LOCK.write_text(new, encoding="utf-8")
    print(f"{name}: models.lock updated\n{lines}", end="")


if __name__ == "__main__":
    main(sys.argv[1])
