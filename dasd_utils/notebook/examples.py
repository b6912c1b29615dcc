"""Worked examples for the notebooks: the method's steps shown on the run's own files.

Each function returns a small table (or a dict the notebook prints) built from what a phase
wrote in the run directory, so that a notebook cell can show an intermediate value: one
response's sentences with P_T, P_S and their type, the classification rule checked against
:func:`dasd_utils.das.classify_sentence`, how many examples DAS keeps under other thresholds,
the loss mask of one training example, the paired 2 × 2 table behind a McNemar test...

Nothing here is used by the pipeline: these functions only read. The pure ones (taking records)
are tested in ``tests/notebook/test_examples.py``; the ``*_for_run`` wrappers only find the records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import Config, DASConfig
from ..evaluation.metrics import always_same_letter, constant_letter

#: The French name of each DAS sentence type (one term per concept, as in the notebooks and the report).
TYPE_FR = {"teacher": "professeur", "shared": "partagée", "student": "élève"}


def _pd():
    import pandas as pd

    return pd


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ------------------------------------------------------------------------------------- 01 data
def question_messages(cfg: Config, which: str = "train", position: int = 0) -> list[dict[str, str]]:
    """Return the chat messages of one question of the run (``which`` = train or eval), exactly as the models get them."""
    from ..data import load_run_questions
    from ..prompts import build_messages

    return build_messages(load_run_questions(cfg, which)[position], cfg.system_prompt)


# ---------------------------------------------------------------------------------- 02 teacher
def quality_verdicts(records: Sequence[Mapping[str, Any]]):
    """Return one row per teacher response: question, sample, answer, gold, verdict and its reason in French."""
    from ..plots.teacher import REASON_LABELS

    rows = []
    for r in records:
        quality = r.get("quality") or {}
        reason = quality.get("reason") or ("requête échouée" if r.get("error") else None)
        rows.append({
            "question": r.get("question_index"),
            "tirage": r.get("sample_index"),
            "réponse": quality.get("answer") or "—",
            "bonne réponse": r.get("gold"),
            "verdict": "gardée" if r.get("kept") else ("valide, non gardée" if quality.get("ok") else "rejetée"),
            "raison": REASON_LABELS.get(reason, reason) if reason else "",
        })
    return _pd().DataFrame(rows)


def teacher_cost(summary: Mapping[str, Any]):
    """Return, per stage, what the teacher phase cost: requests, tokens, and this run's sends vs reuses from the cache."""
    rows = {}
    for key, s in (summary.get("stages") or {}).items():
        usage = s.get("usage") or {}
        rows[key.replace("stage", "stage ")] = {
            "questions": s.get("questions"),
            "requêtes (au total)": s.get("requests"),
            "tokens du prompt": usage.get("prompt_tokens"),
            "tokens générés": usage.get("completion_tokens"),
            "envoyées par cette exécution": s.get("sent"),
            "relues dans le cache": s.get("reused"),
        }
    return _pd().DataFrame(rows, dtype=object)


def phase_time(cfg: Config, phase: str) -> dict[str, Any]:
    """Return a phase's time from ``timings.json``: the last run that computed it, and whether the latest run only reused it."""
    from ..timing import read_timings

    entry = (read_timings(cfg.run_dir).get("phases") or {}).get(phase) or {}
    computed, last = entry.get("computed") or {}, entry.get("last") or {}
    return {"computed_wall_s": computed.get("wall_s"), "computed_cpu_s": computed.get("cpu_s"),
            "last_wall_s": last.get("wall_s"), "last_reused": bool(last.get("reused"))}


# -------------------------------------------------------------------------------------- 03 DAS
def sentence_table(record: Mapping[str, Any], digits: int = 3):
    """Return one scored response's sentences: text, P_T, P_S, P_T − P_S and type (in French)."""
    rows = [{
        "phrase": s["text"],
        "P_T": round(s["p_teacher"], digits),
        "P_S": round(s["p_student"], digits),
        "P_T − P_S": round(s["p_teacher"] - s["p_student"], digits),
        "type": TYPE_FR.get(s["type"], s["type"]),
    } for s in record.get("sentences") or []]
    return _pd().DataFrame(rows)


def scored_sentences(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Return every sentence of the scorable records, in order."""
    return [s for r in records if r.get("scorable") for s in r.get("sentences") or []]


def check_rule(rule: Callable[[float, float], str], records: Sequence[Mapping[str, Any]], cfg: DASConfig | None = None) -> dict[str, Any]:
    """Return how often ``rule(p_t, p_s)`` agrees with ``das.classify_sentence`` and with the stored type, over every sentence."""
    from ..das import classify_sentence

    sentences = scored_sentences(records)
    disagreements = []
    agree_package = agree_stored = 0
    for s in sentences:
        mine = rule(s["p_teacher"], s["p_student"])
        package = classify_sentence(s["p_teacher"], s["p_student"], cfg)
        agree_package += mine == package
        agree_stored += mine == s["type"]
        if mine != package or mine != s["type"]:
            disagreements.append({"phrase": s["text"][:60], "P_T": s["p_teacher"], "P_S": s["p_student"],
                                  "règle": mine, "das.classify_sentence": package, "enregistré": s["type"]})
    return {"sentences": len(sentences), "same_as_package": agree_package, "same_as_stored": agree_stored,
            "disagreements": disagreements}


def keep_decision(record: Mapping[str, Any], cfg: DASConfig | None = None) -> dict[str, Any]:
    """Return the keep decision of one scored response recomputed from its sentences, next to the stored one."""
    from ..das import keep_example, teacher_sentence_ratio

    cfg = cfg or DASConfig()
    types = [s["type"] for s in record["sentences"]]
    ratio = teacher_sentence_ratio(types)
    return {
        "phrases": len(types),
        "phrases professeur": sum(t == "teacher" for t in types),
        "ratio": round(ratio, 3),
        "seuil": cfg.keep_ratio_threshold,
        "gardé (recalculé)": keep_example(ratio, cfg),
        "gardé (enregistré)": bool(record.get("keep")),
    }


def count_kept(records: Sequence[Mapping[str, Any]], cfg: DASConfig) -> int:
    """Return how many scorable records DAS keeps under ``cfg``'s thresholds (sentences reclassified from P_T, P_S)."""
    from ..das import classify_sentence, keep_example, teacher_sentence_ratio

    kept = 0
    for r in records:
        if not r.get("scorable") or not r.get("sentences"):
            continue
        types = [classify_sentence(s["p_teacher"], s["p_student"], cfg) for s in r["sentences"]]
        kept += keep_example(teacher_sentence_ratio(types), cfg)
    return kept


def kept_by_thresholds(records: Sequence[Mapping[str, Any]], cfg: DASConfig | None = None,
                       field: str = "keep_ratio_threshold", values: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5)):
    """Return the number of examples kept when one threshold (``field`` of DASConfig) takes each of ``values``."""
    cfg = cfg or DASConfig()
    counts = {f"{v:g}".replace(".", ","): count_kept(records, dataclasses.replace(cfg, **{field: v})) for v in values}
    return _pd().DataFrame([counts], index=[f"gardés sur {sum(1 for r in records if r.get('scorable'))}"])


def kept_grid(records: Sequence[Mapping[str, Any]], cfg: DASConfig | None = None,
              p_values: Sequence[float] = (0.4, 0.5, 0.6, 0.7, 0.8), divergences: Sequence[float] = (0.1, 0.2, 0.3)):
    """Return kept counts for each (P_T threshold, divergence threshold) pair, the keep ratio threshold unchanged."""
    cfg = cfg or DASConfig()
    rows = {}
    for p in p_values:
        rows[f"P_T > {p:g}".replace(".", ",")] = {
            f"P_T − P_S > {d:g}".replace(".", ","): count_kept(
                records, dataclasses.replace(cfg, teacher_prob_threshold=p, divergence_threshold=d))
            for d in divergences
        }
    return _pd().DataFrame(rows).T


#: A concluding sentence that states the answer before the final line ("So the answer is C (dress shop).").
CONCLUSION_SENTENCE = re.compile(r"\banswer\s+is\b", re.IGNORECASE)


def sentence_role(sentence: Mapping[str, Any]) -> str:
    """Return ``final`` (the "Final Answer: X" line), ``conclusion`` ("... the answer is X") or ``reasoning``."""
    if sentence.get("final_answer"):
        return "final"
    return "conclusion" if CONCLUSION_SENTENCE.search(sentence.get("text") or "") else "reasoning"


def final_line_weight(records: Sequence[Mapping[str, Any]], cfg: DASConfig | None = None) -> dict[str, Any]:
    """Return how much the answer lines weigh in DAS's keep decision for one stage's scored responses.

    The teacher-sentence ratio and the number of kept responses are computed three ways: over
    every sentence (the course's rule), without the final-answer line, and without it nor the
    concluding sentence ("So the answer is ..."). Also where the teacher sentences are.
    """
    from ..das import keep_example, teacher_sentence_ratio

    cfg = cfg or DASConfig()
    scored = [r for r in records if r.get("scorable") and r.get("sentences")]
    ways = {"toutes les phrases (règle du cours)": set(), "sans la ligne finale": {"final"},
            "sans la ligne finale ni la conclusion": {"final", "conclusion"}}
    ratios: dict[str, list[float]] = {way: [] for way in ways}
    kept = {way: 0 for way in ways}
    for r in scored:
        for way, left_out in ways.items():
            types = [s["type"] for s in r["sentences"] if sentence_role(s) not in left_out]
            ratio = teacher_sentence_ratio(types) if types else 0.0
            ratios[way].append(ratio)
            kept[way] += keep_example(ratio, cfg)
    teacher = [sentence_role(s) for r in scored for s in r["sentences"] if s["type"] == "teacher"]
    return {
        "scored": len(scored),
        "mean_sentences": sum(len(r["sentences"]) for r in scored) / len(scored) if scored else None,
        "ratio": {way: sum(v) / len(v) if v else None for way, v in ratios.items()},
        "kept": kept,
        "teacher_sentences": {role: teacher.count(role) for role in ("final", "conclusion", "reasoning")},
    }


def final_line_table(records_by_stage: Mapping[int, Sequence[Mapping[str, Any]]], cfg: DASConfig | None = None):
    """Return :func:`final_line_weight` of each stage as one table (French rows and cells)."""
    from .display import object_table

    columns = {}
    for stage, records in records_by_stage.items():
        w = final_line_weight(records, cfg)
        column: dict[str, Any] = {"réponses notées": w["scored"], "phrases par réponse (moyenne)":
                                  None if w["mean_sentences"] is None else round(w["mean_sentences"], 1)}
        for way, ratio in w["ratio"].items():
            column[f"taux de phrases professeur, {way}"] = None if ratio is None else round(ratio, 3)
        for way, n in w["kept"].items():
            column[f"réponses gardées, {way}"] = n
        names = {"final": "lignes « Final Answer »", "conclusion": "conclusions (« the answer is… »)",
                 "reasoning": "raisonnement"}
        for role, n in w["teacher_sentences"].items():
            column[f"phrases professeur : {names[role]}"] = n
        columns[f"stage {stage}"] = column
    return object_table(columns)


# -------------------------------------------------------------------------------------- 04 SFT
@contextlib.contextmanager
def quiet_library():
    """Silence library warnings and transformers' loading bars: a worked example's output (checked by nbval) is its result only."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def loss_mask_text(tokens: Sequence[str], labels: Sequence[int], open_mark: str = "⟦", close_mark: str = "⟧") -> str:
    """Return the example's text with the supervised tokens (label ≠ -100) between ``open_mark`` and ``close_mark``."""
    out, inside = [], False
    for token, label in zip(tokens, labels):
        supervised = label != -100
        if supervised and not inside:
            out.append(open_mark)
        elif not supervised and inside:
            out.append(close_mark)
        inside = supervised
        out.append(token)
    if inside:
        out.append(close_mark)
    return "".join(out)


def loss_mask_for_run(cfg: Config, stage: int = 1, position: int = 0) -> dict[str, Any]:
    """Return one SFT example of the run tokenized as in training: text with the loss mask marked, and its counts."""
    from ..models import load_tokenizer
    from ..sft import load_sft_examples, sft_data_path, tokenize_sft_example

    record = load_sft_examples(sft_data_path(cfg, stage), cfg.system_prompt)[position]
    tokenizer = load_tokenizer(cfg.student.model, cfg)
    tok = tokenize_sft_example(tokenizer, record["messages"], cfg.sft.cutoff_len)
    pieces = [tokenizer.decode([i]) for i in tok["input_ids"]]
    n_supervised = sum(1 for label in tok["labels"] if label != -100)
    return {
        "text": loss_mask_text(pieces, tok["labels"]),
        "tokens": len(tok["input_ids"]),
        "supervised": n_supervised,
        "prompt_tokens": tok["prompt_len"],
        "supervised_text": tokenizer.decode([i for i, label in zip(tok["input_ids"], tok["labels"]) if label != -100]),
        "assistant_text": record["messages"][2]["content"],
    }


def lora_parameter_table(model):
    """Return, per LoRA-adapted module name, its shape and the r·(entrée + sortie) parameters LoRA adds; plus the total."""
    rows: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if not lora_a or "default" not in lora_a:
            continue
        short = name.rsplit(".", 1)[-1]
        a, b = lora_a["default"].weight, module.lora_B["default"].weight
        row = rows.setdefault(short, {"modules": 0, "entrée": a.shape[1], "sortie": b.shape[0], "r": a.shape[0], "paramètres": 0})
        row["modules"] += 1
        row["paramètres"] += a.numel() + b.numel()
    return _pd().DataFrame(rows).T


def lora_for_run(cfg: Config) -> dict[str, Any]:
    """Return the run's LoraConfig, the parameter table of a fresh LoRA adapter on the student, and the trainable count.

    The student is built from its configuration on PyTorch's ``meta`` device: shapes only, no
    weights read and no memory used, so this works for Qwen3-4B on a Colab CPU as for the demo.
    """
    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..models import resolve_model
    from ..sft import lora_config

    config = lora_config(cfg)
    with quiet_library(), torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(cfg.student.model, cfg)))
        model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    shown = {f: getattr(config, f) for f in ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "task_type")}
    if isinstance(shown["target_modules"], (set, frozenset)):  # PEFT keeps a set: its order changes between processes
        shown["target_modules"] = sorted(shown["target_modules"])
    return {"config": config, "fields": shown, "table": lora_parameter_table(model), "trainable": trainable, "total": total}


def trl_config_for_run(cfg: Config, stage: int = 1) -> dict[str, Any]:
    """Return the main fields of TRL's ``SFTConfig`` that ``sft.train_stage`` builds for ``stage`` (batch split as recorded)."""
    from ..sft import TrainingRun, read_manifest, sft_arguments

    manifest = read_manifest(cfg, stage) or {}
    hardware = manifest.get("hardware") or {}
    settings = TrainingRun(
        cfg.sft, output_dir="sft", learning_rate=cfg.sft.lr_stage1 if stage == 1 else cfg.sft.lr_stage2,
        precision=hardware.get("precision", "fp32"), use_cpu=hardware.get("device", "cpu") == "cpu",
        max_length=cfg.sft.cutoff_len,
    )
    n_examples = (manifest.get("dataset") or {}).get("n_examples") or 1
    with quiet_library():
        args = sft_arguments(settings, hardware.get("per_device_batch_size", cfg.sft.per_device_batch_size),
                             hardware.get("grad_accum", cfg.sft.grad_accum), n_examples, hardware.get("world_size", 1))
    fields = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
              "lr_scheduler_type", "warmup_steps", "weight_decay", "max_length", "bf16", "fp16", "seed")
    return {f: getattr(getattr(args, f), "value", getattr(args, f)) for f in fields}


# ----------------------------------------------------------------------------------- 05 stage 2
def stage_start_table(manifests: Mapping[int, Mapping[str, Any] | None], stage1_sha256: str | None = None):
    """Return what each SFT stage starts from and trains on, side by side (stage 2's parent adapter checked against stage 1's)."""
    from .display import object_table, sft_facts

    columns = {}
    for stage, m in sorted(manifests.items()):
        if not m:
            continue
        parent = m.get("parent_adapter") or {}
        facts = sft_facts(m)
        facts.pop("stage")
        column = {"part de": f"adaptateur {parent.get('path')}" if parent else f"modèle de base {m.get('base_model')}",
                  "données": m.get("data_path"),
                  "tokens supervisés": (m.get("dataset") or {}).get("n_supervised_tokens"), **facts}
        if parent and stage1_sha256:
            column["parent = adaptateur actuel du stage 1"] = parent.get("sha256") == stage1_sha256
        columns[f"stage {stage}"] = column
    return object_table(columns)


def stage_start_for_run(cfg: Config):
    """Return :func:`stage_start_table` for the run's two SFT manifests."""
    from ..hashing import adapter_sha256
    from ..sft import read_manifest, stage_dir

    folder = stage_dir(cfg, 1)
    sha = adapter_sha256(folder) if (folder / "adapter_model.safetensors").is_file() else None
    return stage_start_table({1: read_manifest(cfg, 1), 2: read_manifest(cfg, 2)}, sha)


# ----------------------------------------------------------------------------------- 06 eval
def answer_check(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """Return the stored extracted letter next to ``extract_answer`` run again on the stored response."""
    from ..prompts import extract_answer

    again = extract_answer(prediction.get("response"))
    return {"réponse extraite (enregistrée)": prediction.get("extracted"), "extract_answer(réponse)": again,
            "bonne réponse": prediction.get("gold"), "correcte": again is not None and again == prediction.get("gold"),
            "identique": again == prediction.get("extracted")}


def paired_table(correct_a: Sequence[bool], correct_b: Sequence[bool], a: str, b: str):
    """Return the 2 × 2 table of two models on the same items (rows: ``a`` right/wrong; columns: ``b``)."""
    from ..stats import paired_counts

    t = paired_counts(correct_a, correct_b)
    return _pd().DataFrame(
        [[t["both_correct"], t["only_a_correct"]], [t["only_b_correct"], t["both_wrong"]]],
        index=[f"{a} juste", f"{a} faux"], columns=[f"{b} juste", f"{b} faux"],
    )


def mcnemar_formula(only_a: int, only_b: int) -> str:
    """Return the exact McNemar p-value written out on the table's two discordant counts (French decimals).

    With ``n = only_a + only_b`` discordant questions and ``k = min(only_a, only_b)``, under the
    null hypothesis each discordant question is a fair coin: ``p = min(1, 2·P(Bin(n, ½) ≤ k))``.
    """
    from ..stats import mcnemar_exact

    n, k = only_a + only_b, min(only_a, only_b)
    p = mcnemar_exact(only_a, only_b)
    if n == 0:
        return "aucune question discordante (n = 0) : rien ne distingue les deux modèles, p = 1"
    terms = [math.comb(n, i) for i in range(k + 1)]
    written = " + ".join(f"C({n},{i})" for i in range(k + 1)) if k < 3 else f"C({n},0) + … + C({n},{k})"
    value = f"{p:.4f}".rstrip("0").rstrip(".").replace(".", ",")
    capped = " (plafonnée à 1)" if 2 * sum(terms) > 2 ** n else ""
    return (f"n = {only_a} + {only_b} = {n} questions discordantes, k = min = {k} : "
            f"p = 2·P(Bin({n}, ½) ≤ {k}) = 2 × ({written}) / 2^{n} = 2 × {sum(terms)}/{2 ** n} → p = {value}{capped}")


def mcnemar_from_table(table) -> float:
    """Return the exact McNemar p-value of a 2 × 2 table: it only reads the two discordant cells."""
    from ..stats import mcnemar_exact

    return mcnemar_exact(int(table.iloc[0, 1]), int(table.iloc[1, 0]))


def paired_tables(predictions: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Return, for every pair of models, the 2 × 2 table on their common questions and its McNemar p-value."""
    names = list(predictions)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            by_a = {p["question_id"]: bool(p["correct"]) for p in predictions[a]}
            by_b = {p["question_id"]: bool(p["correct"]) for p in predictions[b]}
            ids = sorted(set(by_a) & set(by_b))
            table = paired_table([by_a[q] for q in ids], [by_b[q] for q in ids], a, b)
            out.append({"a": a, "b": b, "table": table, "p": mcnemar_from_table(table)})
    return out


def predictions_for_run(cfg: Config) -> dict[str, list[dict[str, Any]]]:
    """Return the run's stored predictions per evaluated model."""
    from ..data import read_jsonl
    from ..evaluation import predictions_path

    out = {}
    for name in cfg.eval.models:
        path = predictions_path(cfg, name)
        if path.is_file():
            out[name] = read_jsonl(path)
    return out


def show_paired_tables(cfg: Config) -> None:
    """Print each pair's 2 × 2 table and its McNemar p-value, checked equal to the one in metrics.json."""
    metrics = _read_json(cfg.run_dir / "eval" / "metrics.json") or {}
    stored = {(c["a"], c["b"]): c["mcnemar_p"] for c in metrics.get("comparisons") or []}
    for item in paired_tables(predictions_for_run(cfg)):
        same = stored.get((item["a"], item["b"]))
        print(f"--- {item['a']} contre {item['b']} ---")
        print(item["table"].to_string())
        table = item["table"]
        print(mcnemar_formula(int(table.iloc[0, 1]), int(table.iloc[1, 0])))
        verdict = ("" if same is None else "identique à celle de metrics.json" if math.isclose(same, item["p"])
                   else f"metrics.json dit {same:.4f}".replace(".", ","))
        print(f"p McNemar exact recalculée : {item['p']:.4f}".replace(".", ",") + (f" ({verdict})" if verdict else "") + "\n")


__all__ = [
    "CONCLUSION_SENTENCE", "TYPE_FR", "always_same_letter", "answer_check", "check_rule", "constant_letter",
    "count_kept", "final_line_table", "final_line_weight", "keep_decision", "mcnemar_formula", "sentence_role",
    "kept_by_thresholds", "kept_grid", "lora_for_run", "lora_parameter_table", "loss_mask_for_run", "loss_mask_text",
    "mcnemar_from_table", "paired_table", "paired_tables", "predictions_for_run", "quality_verdicts",
    "question_messages", "scored_sentences", "sentence_table", "show_paired_tables", "stage_start_for_run",
    "stage_start_table", "teacher_cost", "phase_time", "trl_config_for_run",
]
