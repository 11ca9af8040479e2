"""Write a packaged model's files (size, sha256) into its models.lock entry.

    python tools/lock_packaged_model.py tcodec-taco-v1

Run after `python -m tcodec.training CONFIG --export NAME`; `tcodec models verify NAME`
and tests/test_weights.py then hold the package to those hashes. A model models.lock does
not list yet gets a new entry (licence: the training data's terms, as for every tcodec
model; text encoder and recipe from its config.json).
"""

import json
import re
import sys
from pathlib import Path

from tcodec.models.taco_weights import WEIGHTS_FILE
from tcodec.weights import CONFIG_FILE, model_file_digest, model_file_size, model_folder

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "models.lock"
PACKAGE = ROOT / "tcodec" / "data" / "models"


LICENSE = "weights: non-commercial research (trained on ImageNet/BSDS/COCO/SUN images, see ../shared/data/SOURCES.md)"


def new_entry(name: str) -> str:
    config = json.loads((PACKAGE / name / CONFIG_FILE).read_text(encoding="utf-8"))
    rates = config["taco"]["rates"]
    return (f'\n[[model]]\nname = "{name}"\nbackend = "taco"\nkind = "tcodec"\nsource = "package"\n'
            f'license = "{LICENSE}"\ntext_encoder = "{config["text_encoder"]}"\n'
            f'notes = "tcodec\'s own variable-rate weights (q 1-{rates}), float16, shipped in the package; '
            f'recipe training/{config["recipe"]}, see training/MODEL_CARD.md"\nfiles = [\n]\n')


def main(name: str) -> None:
    if not re.search(r'^name = "' + re.escape(name) + '"$', LOCK.read_text(encoding="utf-8"), flags=re.M):
        with LOCK.open("a", encoding="utf-8") as lock:
            lock.write(new_entry(name))
    folder = model_folder(name)
    lines = "".join(f'  {{ path = "{f}", size = {model_file_size(folder, f)}, sha256 = "{model_file_digest(folder, f)}" }},\n'
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
