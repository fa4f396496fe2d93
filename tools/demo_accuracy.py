"""The embedded demo's accuracy over everything it was trained on, asked through `r1 ask` on a real server.

Run:  python tools/demo_accuracy.py [--base-url URL] [--samples N]
Each question of r1cli/demo_model/questions.json is asked N times at T=0.6 (r1's default), with the math
directive (as `r1 ask` sends it) and without (`--no-math`); a sample is right when its boxed answer is the
trained one. Prints one line per question and the totals; `--json` prints them as one object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1cli import config, rules


def ask(question: str, base_url: str, samples: int, math: bool) -> list[str | None]:
    """The answers of SAMPLES parallel samples (`r1 ask --samples`), None where one had no boxed answer."""
    args = [sys.executable, "-m", "r1cli", "ask", question, "--json", "--samples", str(samples),
            "--base-url", base_url] + ([] if math else ["--no-math"])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode not in (0, 4):  # 4: no answer at all, which counts as wrong
        raise SystemExit(f"r1 ask failed ({proc.returncode}): {proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    return [s["answer"] if s["boxed"] else None for s in data.get("samples", [data])]


def measure(base_url: str, samples: int) -> dict:
    rows = []
    for item in config.demo_questions():
        for math in (True, False):
            answers = ask(item["question"], base_url, samples, math)
            rows.append({"question": item["question"], "expected": item["answer"], "directive": math,
                         "right": sum(a == item["answer"] for a in answers), "samples": len(answers),
                         "wrong": sorted({str(a) for a in answers if a != item["answer"]})})
    right, total = sum(r["right"] for r in rows), sum(r["samples"] for r in rows)
    return {"temperature": rules.DEFAULT_TEMPERATURE, "right": right, "samples": total, "accuracy": right / total,
            "questions": len(config.demo_questions()), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    result = measure(opts.base_url, opts.samples)
    if opts.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return
    for row in result["rows"]:
        wrong = f"  wrong: {', '.join(row['wrong'])}" if row["wrong"] else ""
        print(f"{row['right']:3}/{row['samples']}  {'directive' if row['directive'] else 'plain    '}  "
              f"{row['question']} -> {row['expected']}{wrong}")
    print(f"{result['right']}/{result['samples']} = {result['accuracy']:.1%} over {result['questions']} questions "
          f"at T={result['temperature']}")


if __name__ == "__main__":
    main()
