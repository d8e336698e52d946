"""How often the key sentence under each title (``selection.finding``) reports a finding, on 50 abstracts
labelled by hand (``findings_labels.json``: which sentences of each report a result), beside three plain
choices: the first sentence, the last, and one at random (its expected share).

    cd bench && ../.venv/bin/python findings.py

The picker's weights were written before these labels existed and were not changed after seeing its
score on them (a figure on labels a choice was tuned on would say nothing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from conftest import seed_papers  # noqa: E402

from digest.selection.finding import key_finding, sentences  # noqa: E402


def main() -> None:
    labelled = json.loads((HERE / "findings_labels.json").read_text(encoding="utf-8"))["papers"]
    papers = {p.key: p for p in seed_papers()}
    hits = {
        "key sentence (digest)": 0.0,
        "first sentence": 0.0,
        "last sentence": 0.0,
        "a random sentence": 0.0,
    }
    counted = 0
    for item in labelled:
        split = sentences(papers[item["key"]].abstract)
        assert [s[:60] for s in split] == item["sentences"], (
            f"the sentences of {item['key']} changed: label again"
        )
        results = set(item["results"])
        if not results:  # an abstract that reports no finding: no sentence can be right
            continue
        counted += 1
        pick = (
            split.index(key_finding(papers[item["key"]].abstract))
            if key_finding(papers[item["key"]].abstract) in split
            else -1
        )
        hits["key sentence (digest)"] += pick in results
        hits["first sentence"] += 0 in results
        hits["last sentence"] += len(split) - 1 in results
        hits["a random sentence"] += len(results) / len(split)
    print(
        f"{counted} of {len(labelled)} labelled abstracts report a finding; the share of them whose chosen sentence is one:\n"
    )
    print("| choice | result sentence |")
    print("| --- | ---: |")
    for name, value in hits.items():
        print(f"| {name} | {value / counted:.2f} |")


if __name__ == "__main__":
    main()
