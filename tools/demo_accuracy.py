"""The embedded demo's accuracy over everything it was trained on, asked through `r1 ask` on a real server,
and over conversations, through a piped `r1 chat`.

Run:  python tools/demo_accuracy.py [--base-url URL] [--samples N] [--chats SEEDS]
Each question of r1cli/demo_model/questions.json is asked N times at T=0.6 (r1's default), with the math
directive (as `r1 ask` sends it) and without (`--no-math`); a sample is right when its boxed answer is the
trained one. With --chats, the piped chats of CHATS (two and five questions, each after the earlier turns, as
`r1 chat` sends them) run once per seed 1..SEEDS (`r1 chat --answer-only --seed S`) instead; a chat is right
when every answer is. Prints one line per question (chat) and the totals; `--json` prints them as one object.
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


# The README's piped chats: `printf 'What is 7*6?\nWhat is 9+8?\n' | r1 run demo`, and five questions, the
# last two after a Chinese one.
CHATS = (
    ("What is 7*6?", "What is 9+8?"),
    ("What is 2+3?", "What is 12-5?", "What is 4*5?", "6乘以8等于多少？", "What is 18/3?"),
)


def chat(questions: tuple[str, ...], base_url: str, seed: int) -> list[str]:
    """The answers of one piped `r1 chat --answer-only --seed SEED`, one per question ("" for none)."""
    args = [sys.executable, "-m", "r1cli", "chat", "--answer-only", "--seed", str(seed), "--base-url", base_url]
    proc = subprocess.run(args, input="".join(q + "\n" for q in questions), capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode not in (0, 4):  # 4: a turn without an answer, which counts as wrong
        raise SystemExit(f"r1 chat failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.splitlines()


def measure_chats(base_url: str, seeds: int) -> dict:
    answers = {item["question"]: item["answer"] for item in config.demo_questions()}
    rows = []
    for questions in CHATS:
        expected = [answers[q] for q in questions]
        got = [chat(questions, base_url, seed) for seed in range(1, seeds + 1)]
        rows.append({"questions": list(questions), "expected": expected, "runs": seeds,
                     "right": sum(g == expected for g in got),
                     "wrong": sorted({" ".join(g) for g in got if g != expected})})
    return {"temperature": rules.DEFAULT_TEMPERATURE, "seeds": seeds, "rows": rows,
            "right": sum(r["right"] for r in rows), "runs": seeds * len(rows)}


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
    parser.add_argument("--chats", type=int, metavar="SEEDS", help="run the piped chats with seeds 1..SEEDS instead")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    result = measure_chats(opts.base_url, opts.chats) if opts.chats else measure(opts.base_url, opts.samples)
    if opts.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return
    print("\n".join(report(result, chats=bool(opts.chats))))


def report(result: dict, chats: bool) -> list[str]:
    """One line per question (per chat), then the totals."""
    lines = []
    for row in result["rows"]:
        if chats:
            what = f"chat of {len(row['questions'])}: {' '.join(row['questions'])} -> {' '.join(row['expected'])}"
        else:
            what = f"{'directive' if row['directive'] else 'plain    '}  {row['question']} -> {row['expected']}"
        wrong = f"  wrong: {(' | ' if chats else ', ').join(row['wrong'])}" if row["wrong"] else ""
        lines.append(f"{row['right']:3}/{row['runs' if chats else 'samples']}  {what}{wrong}")
    if chats:
        return lines + [f"{result['right']}/{result['runs']} piped chats all right, seeds 1-{result['seeds']} at "
                        f"T={result['temperature']}"]
    return lines + [f"{result['right']}/{result['samples']} = {result['accuracy']:.1%} over {result['questions']} "
                    f"questions at T={result['temperature']}"]

if __name__ == "__main__":
    main()
