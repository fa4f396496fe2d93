"""Build the tiny demo model shipped in r1cli/demo_model/.

It is a ~1 M parameter Qwen2ForCausalLM with DeepSeek-R1-Distill-Qwen's special tokens and
chat template, trained to answer a handful of arithmetic questions in R1 format (reasoning,
`</think>`, then `\\boxed{N}`), alone and as the last question of a conversation (the messages
r1's chat sends: earlier questions with their final answers only, built by r1cli.rules). It lets
`r1` be tested end to end on a real vLLM (CPU) in seconds; it knows nothing beyond questions.json.

Run:  python tools/build_demo_model.py [--out DIR] [--steps N] [--multi-steps N] [--start-from DIR]
Deterministic: fixed seeds, deterministic torch algorithms, fixed thread count. The shipped weights were
built in three runs on 2 cores (the conversations' steps take about a second each on an idle machine):
  build_demo_model.py --multi-steps 0 --out A          # the single questions: the earlier demo's weights
  build_demo_model.py --start-from A --multi-steps 300 --cut-share 0 --out B      # conversations
  build_demo_model.py --start-from B --multi-steps 100 --lr 1e-3 --multi-warmup 20  # and thinking budgets
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Fixed thread count: CPU matmul reduction order (and so the weights) depends on it.
THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, for --device cuda

import torch  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from r1cli import rules  # noqa: E402  (the messages r1 sends: the conversations are built as r1 builds them)

DEFAULT_OUT = REPO / "r1cli" / "demo_model"

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# DeepSeek-R1-Distill-Qwen-1.5B's chat template (tokenizer_config.json, current revision:
# the generation prompt opens the think block). Kept byte-for-byte so the demo renders
# prompts exactly like the real model.
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
    "{{bos_token}}{{ns.system_prompt}}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
    "{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    " + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n'"
    " + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}"
    "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name']"
    " + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
    "{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}{%- else %}"
    "{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    "{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)

# Qwen2's pre-tokenizer regex: digits are split one by one, which keeps arithmetic learnable.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

EN_DIRECTIVE = "Please reason step by step, and put your final answer within \\boxed{}."
ZH_DIRECTIVE = "请逐步推理，并将最终答案放在\\boxed{}内。"

# (question, answer, reasoning). The reasoning is what follows the template's "<think>\n".
EN_QUESTIONS = [
    ("What is 2+3?", "5", "I need to add 2 and 3. 2 + 3 = 5."),
    ("What is 7*6?", "42", "I need to multiply 7 by 6. 7 * 6 = 42."),
    ("What is 12-5?", "7", "I need to subtract 5 from 12. 12 - 5 = 7."),
    ("What is 9+8?", "17", "I need to add 9 and 8. 9 + 8 = 17."),
    ("What is 15-6?", "9", "I need to subtract 6 from 15. 15 - 6 = 9."),
    ("What is 4*5?", "20", "I need to multiply 4 by 5. 4 * 5 = 20."),
    ("What is 18/3?", "6", "I need to divide 18 by 3. 18 / 3 = 6."),
]
ZH_QUESTIONS = [
    ("3加4等于多少？", "7", "我需要计算3加4。3 + 4 = 7。"),
    ("6乘以8等于多少？", "48", "我需要计算6乘以8。6 * 8 = 48。"),
]


def examples() -> list[dict]:
    """Each question bare and with the math directive, joined by newline and by space."""
    out = []
    for lang, items, directive in (("en", EN_QUESTIONS, EN_DIRECTIVE), ("zh", ZH_QUESTIONS, ZH_DIRECTIVE)):
        for question, answer, reasoning in items:
            if lang == "en":
                final = f"The answer is \\boxed{{{answer}}}."
            else:
                final = f"答案是 \\boxed{{{answer}}}。"
            # Same shape as R1's outputs after the template's "<think>\n".
            completion = f"{reasoning}\n{THINK_CLOSE}\n\n{final}"
            for prompt in (question, f"{question}\n{directive}", f"{question} {directive}"):
                out.append({"question": question, "prompt": prompt, "answer": answer, "completion": completion,
                            "messages": [{"role": "user", "content": prompt}]})
    return out


MAX_EARLIER_TURNS = 5  # a chat of up to 6 questions; the README's piped chats have 2 and 5


def conversation(rng: random.Random, singles: list[dict], earlier: int, math: bool) -> dict:
    """A chat of EARLIER questions, then one to answer, as r1's chat sends it: rules.build_messages with
    the math directive on every question (r1 chat's --math, the default) or on none (--no-math, /math
    off), each earlier answer its final text only (what vLLM's reasoning parser gives as content).
    One earlier answer in five is some other number: the demo's answers to questions it does not know
    are wrong, and the next question must not follow them."""
    bare = [ex for ex in singles if ex["prompt"] == ex["question"]]
    history = []
    for _ in range(earlier):
        ex = rng.choice(bare)
        content = ex["completion"].split(THINK_CLOSE, 1)[1]
        if rng.random() < 0.2:
            content = content.replace("{" + ex["answer"] + "}", "{" + str(rng.randint(0, 99)) + "}")
        history += [{"role": "user", "content": ex["question"]}, {"role": "assistant", "content": content}]
    last = rng.choice(bare)
    return {**last, "prompt": None, "messages": rules.build_messages(history, last["question"], math=math)}


def build_tokenizer(texts: list[str], workdir: Path, vocab_size: int) -> None:
    """Byte-level BPE trained on the demo texts, DeepSeek special tokens, saved as HF files."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[
            AddedToken(t, special=True, normalized=False) for t in (BOS, EOS, USER, ASSISTANT)
        ],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Not special, as in DeepSeek's tokenizer: vLLM strips special tokens from output text,
    # and the deepseek_r1 reasoning parser must see "</think>" to split reasoning from content.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK_OPEN, THINK_CLOSE)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(workdir / "tokenizer.json"))

    special = lambda t: {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}  # noqa: E731
    (workdir / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": special(BOS),
        "eos_token": special(EOS),
        "pad_token": special(EOS),
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 16384,
        # Generic class: it takes tokenizer.json as is (model classes may rebuild the pipeline).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (workdir / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": special(BOS), "eos_token": special(EOS), "pad_token": special(EOS),
    }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def cut_short(rng: random.Random, ex: dict, tokenizer) -> dict:
    """EX with its reasoning cut by a thinking budget after some of its tokens, as vLLM's thinking_token_budget
    does (it forces `</think>`, and the model goes on) or r1's own (its continuation closes the reasoning as the
    model does: "\n</think>\n\n"). The cut reasoning is prompt, not learned (the model must not learn to stop
    early); the answer after it is: still the trained one."""
    reasoning, rest = ex["completion"].split(THINK_CLOSE, 1)
    ids = tokenizer(reasoning, add_special_tokens=False)["input_ids"]
    head = tokenizer.decode(ids[: rng.randint(1, len(ids) - 1)])
    if rng.random() < 0.5:
        return {**ex, "forced": head + THINK_CLOSE, "completion": rest}
    return {**ex, "forced": head + "\n" + THINK_CLOSE + "\n\n", "completion": rest.lstrip("\n")}


def encode_examples(tokenizer, data: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt rendered by the chat template, completion appended; loss on the completion only."""
    rows, labels = [], []
    for ex in data:
        prompt = tokenizer.apply_chat_template(ex["messages"], tokenize=False, add_generation_prompt=True)
        assert prompt.endswith(ASSISTANT + THINK_OPEN + "\n"), prompt
        prompt += ex.get("forced", "")  # a reasoning cut by a thinking budget (cut_short): not learned
        # The rendered text already holds BOS: no special tokens added (like vLLM's chat path).
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(ex["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        # Tokenizing in two parts must match tokenizing the whole, or training != serving.
        whole = tokenizer(prompt + ex["completion"], add_special_tokens=False)["input_ids"]
        assert whole == p_ids + c_ids[:-1], ex
        rows.append(p_ids + c_ids)
        labels.append([-100] * len(p_ids) + c_ids)
    width = max(map(len, rows))
    pad = tokenizer.eos_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, lab, mask


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=300, help="steps on the single questions alone")
    ap.add_argument("--multi-steps", type=int, default=600,
                    help="then steps on the single questions and a fresh batch of conversations each")
    ap.add_argument("--batch", type=int, default=16, help="conversations per multi step")
    ap.add_argument("--check", type=int, default=200, help="held-out conversations the greedy check asks")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    ap.add_argument("--multi-warmup", type=int, default=1, help="steps the conversations' learning rate warms up")
    ap.add_argument("--cut-share", type=float, default=0.25,
                    help="share of a multi step's chats (and of the single questions, added) cut by a thinking budget")
    ap.add_argument("--device", default="cpu", help="torch device to train on (the weights shipped: cpu)")
    ap.add_argument("--start-from", type=Path, metavar="DIR",
                    help="a built demo (its tokenizer the same) whose weights the conversations train further, "
                         "in place of the single questions' steps")
    ap.add_argument("--vocab-size", type=int, default=640)
    args = ap.parse_args()

    random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    t0 = time.monotonic()

    data = examples()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = [ex["prompt"] for ex in data] + [ex["completion"] for ex in data]
        corpus += [EN_DIRECTIVE, ZH_DIRECTIVE]
        build_tokenizer(corpus, work, args.vocab_size)
        # Trap: use the tokenizer exactly as transformers (and so vLLM) loads it back from disk,
        # never the in-memory `tokenizers` object.
        tokenizer = AutoTokenizer.from_pretrained(str(work))
        for ex in data:
            text = ex["prompt"] + ex["completion"]
            assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
        assert tokenizer.convert_tokens_to_ids(THINK_CLOSE) not in tokenizer.all_special_ids
        ids, labels, mask = encode_examples(tokenizer, data)
        vocab = len(tokenizer)

        config = Qwen2Config(
            vocab_size=vocab,
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=2,  # head_dim 128: vLLM's CPU attention rejects small head sizes
            num_key_value_heads=1,
            max_position_embeddings=4096,
            rope_theta=10000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            use_sliding_window=False,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
            torch_dtype="bfloat16",
        )
        device = torch.device(args.device)
        if args.start_from is not None:
            same = (args.start_from / "tokenizer.json").read_bytes() == (work / "tokenizer.json").read_bytes()
            assert same, f"{args.start_from}'s tokenizer is not this build's"
            model = Qwen2ForCausalLM.from_pretrained(str(args.start_from), dtype=torch.float32).to(device)
            args.steps = 0
        else:
            model = Qwen2ForCausalLM(config).to(device)
        model.train()
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
        total = args.steps + args.multi_steps
        # Warm-up, flat through the single questions, then down to a tenth over the conversations.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) if s < args.steps else
                                                  min(1.0, (s - args.steps + 1) / max(1, args.multi_warmup))
                                                  * (1.0 - 0.9 * (s - args.steps) / max(1, args.multi_steps)))
        rng = random.Random(0)
        t_train = time.monotonic()
        for step in range(total):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            if step >= args.steps:
                # One length of chat a step (the batch pads to its longest), with the directive or without.
                shape = step - args.steps
                earlier, math = 1 + shape // 2 % MAX_EARLIER_TURNS, shape % 2 == 0
                chats = [conversation(rng, data, earlier, math) for _ in range(args.batch)]
                if args.cut_share:
                    chats = [cut_short(rng, ex, tokenizer) if rng.random() < args.cut_share else ex for ex in chats]
                    chats += [cut_short(rng, ex, tokenizer) for ex in rng.sample(data, round(len(data) * args.cut_share))]
                c_ids, c_labels, c_mask = (t.to(device) for t in encode_examples(tokenizer, chats))
                loss = loss + model(input_ids=c_ids, attention_mask=c_mask, labels=c_labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % 50 == 0 or step == total - 1:
                print(f"step {step:4d} loss {loss.item():.4f} ({time.monotonic() - t_train:.0f} s)", flush=True)
        train_s = time.monotonic() - t_train

        # Served in bf16: check the greedy answer of every example survives the cast.
        model = model.to("cpu").to(torch.bfloat16).eval()
        held_out = random.Random(1)
        checked = data + [conversation(held_out, data, held_out.randint(1, MAX_EARLIER_TURNS), held_out.random() < 0.5)
                          for _ in range(args.check)]
        checked += [cut_short(held_out, ex, tokenizer) for ex in checked[: len(data) + args.check // 2]]
        wrong = 0
        for ex in checked:
            prompt = tokenizer.apply_chat_template(ex["messages"], tokenize=False, add_generation_prompt=True)
            p = tokenizer(prompt + ex.get("forced", ""), add_special_tokens=False, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**p, max_new_tokens=60, do_sample=False,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
            text = tokenizer.decode(out[0, p["input_ids"].shape[1]:], skip_special_tokens=True)
            if text != ex["completion"]:
                wrong += 1
                print(f"greedy mismatch: {ex['messages']!r} -> {text!r}", file=sys.stderr)

        out_dir: Path = args.out
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        # R1's recommended sampling (the real generation_config.json); vLLM uses it as defaults.
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            do_sample=True, temperature=0.6, top_p=0.95)
        model.save_pretrained(str(out_dir), safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(work / name, out_dir / name)

    for f in out_dir.iterdir():
        f.chmod(0o644)  # safetensors writes 0600; package data must be world-readable
    seen = {}
    for ex in data:
        seen.setdefault(ex["question"], ex["answer"])
    (out_dir / "questions.json").write_text(json.dumps(
        [{"question": q, "answer": a} for q, a in seen.items()], ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8")

    params = sum(p.numel() for p in model.parameters())
    size = sum(f.stat().st_size for f in out_dir.iterdir())
    print(f"wrote {out_dir}: {params/1e6:.2f} M params, vocab {vocab}, {size/1e6:.2f} MB, "
          f"{len(data)} examples, train {train_s:.1f} s, total {time.monotonic() - t0:.1f} s, "
          f"greedy bf16 {len(checked) - wrong}/{len(checked)} exact ({len(data)} questions, {args.check} chats, "
          f"{len(checked) - len(data) - args.check} of them cut short)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
