import json

from tcodec.bench.cache import ResultCache, result_key

IDENTITY = {"name": "webp", "settings": {"method": 6}, "versions": {"libwebp": "1.6.0"}, "model_hash": None}


def test_the_key_changes_with_everything_that_decides_a_result():
    key = result_key("a" * 64, IDENTITY, 50)
    assert key == result_key("a" * 64, dict(IDENTITY), 50)
    changed = [
        result_key("b" * 64, IDENTITY, 50),
        result_key("a" * 64, IDENTITY, 60),
        result_key("a" * 64, {**IDENTITY, "settings": {"method": 4}}, 50),
        result_key("a" * 64, {**IDENTITY, "versions": {"libwebp": "1.7.0"}}, 50),
        result_key("a" * 64, {**IDENTITY, "model_hash": "0123456789abcdef"}, 50),
    ]
    assert key not in changed and len(set(changed)) == len(changed)


def test_results_survive_a_line_cut_short(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = ResultCache(path)
    cache.add({"key": "one", "bpp": 0.5})
    with open(path, "a") as file:
        file.write('{"key": "two", "bp')  # interrupted mid-write
    again = ResultCache(path)
    assert again.get("one") == {"key": "one", "bpp": 0.5} and again.get("two") is None
    again.add({"key": "three", "bpp": 1.0})
    assert ResultCache(path).get("three") == {"key": "three", "bpp": 1.0}
    assert json.loads(path.read_text().splitlines()[-1])["key"] == "three"


def test_the_caption_is_part_of_the_key_when_given():
    plain = result_key("a" * 64, IDENTITY, 50)
    assert result_key("a" * 64, IDENTITY, 50, None) == plain
    assert result_key("a" * 64, IDENTITY, 50, "a red door") not in (plain, result_key("a" * 64, IDENTITY, 50, "x"))
