"""The in-process Hugging Face backend: the base weights load once, PEFT adapters are switched in place."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..config import Config
from .generation import chat_prefix_ids, generate_greedy, render_chat_prompt
from .loglik import loglik_scores
from .models import EvalModel, base_fingerprint

log = logging.getLogger(__name__)


class HFBackend:
    """In-process Hugging Face backend: the base weights load once, adapters are switched in place."""

    name = "hf"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._tokenizer = None
        self._base = None
        self._peft = None
        self._adapters: dict[Path, str] = {}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..models import load_tokenizer

            self._tokenizer = load_tokenizer(self.cfg.student.model, self.cfg)
        return self._tokenizer

    def settings(self) -> dict[str, Any]:
        """Return what, besides the prompt and the model, changes the outputs (for the cache key)."""
        from ..models import pick_device

        device = pick_device(self.cfg.student.device)
        return {
            "backend": "hf",
            "dtype": self.cfg.student.dtype,
            "device": device.split(":")[0],
            "base": base_fingerprint(self.cfg),
            "stop_at_answer": bool(self.cfg.eval.stop_at_answer),
        }

    def prompt_key(self, row: dict[str, Any]) -> str:
        """Return the rendered chat prompt (the cache key covers the system prompt and the template)."""
        return render_chat_prompt(self.tokenizer, row, self.cfg.system_prompt)

    def _load_base(self):
        if self._base is None:
            from ..models import load_student

            log.info("loading the student %s", self.cfg.student.model)
            self._base, tokenizer = load_student(self.cfg)
            if self._tokenizer is None:
                self._tokenizer = tokenizer
        return self._base

    def _check_template(self, adapter: Path) -> None:
        saved = adapter / "chat_template.jinja"
        if saved.is_file() and saved.read_text(encoding="utf-8").strip() != (self.tokenizer.chat_template or "").strip():
            log.warning(
                "%s holds a chat template different from the base tokenizer's; evaluating with the base "
                "tokenizer's template (the one build_messages + apply_chat_template used for training)",
                adapter,
            )

    @contextlib.contextmanager
    def activate(self, spec: EvalModel) -> Iterator[Any]:
        """Yield the model to run for ``spec``: the base (adapters disabled) or the base with its adapter active."""
        base = self._load_base()
        if spec.adapter is None:
            if self._peft is None:
                yield base
            else:
                with self._peft.disable_adapter():
                    yield self._peft
            return
        key = spec.adapter.resolve()
        if key not in self._adapters:
            self._check_template(spec.adapter)
            # PEFT adapter names become module keys: keep them simple and unique.
            adapter_name = f"eval_{len(self._adapters)}"
            if self._peft is None:
                from peft import PeftModel

                self._peft = PeftModel.from_pretrained(base, str(spec.adapter), adapter_name=adapter_name, is_trainable=False)
            else:
                self._peft.load_adapter(str(spec.adapter), adapter_name=adapter_name, is_trainable=False)
            self._peft.eval()
            self._adapters[key] = adapter_name
        self._peft.set_adapter(self._adapters[key])
        yield self._peft

    def chunk_size(self) -> int:
        """Return how many items to generate between two saves of the predictions file (one batch)."""
        return max(1, self.cfg.eval.batch_size)

    def prompt_length(self, prompt: str) -> int:
        """Return the prompt's length in tokens (batches group prompts of similar length)."""
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(
        self, spec: EvalModel, rows: Sequence[dict[str, Any]], prompts: Sequence[str], progress: bool = True
    ) -> list[dict[str, Any]]:
        """Return greedy generations for ``prompts`` (rendered chat strings)."""
        with self.activate(spec) as model:
            return generate_greedy(
                model, self.tokenizer, prompts, self.cfg.eval.max_new_tokens, self.cfg.eval.batch_size,
                desc=f"génération {spec.name}", progress=progress,
                prefix_ids=chat_prefix_ids(self.tokenizer, self.cfg.system_prompt),
                stop_at_answer=self.cfg.eval.stop_at_answer,
            )

    def loglik(self, spec: EvalModel, rows: Sequence[dict[str, Any]]) -> list[list[float]]:
        """Return the five continuation log-probabilities per question."""
        with self.activate(spec) as model:
            return loglik_scores(model, self.tokenizer, rows, self.cfg.eval.batch_size)


__all__ = [
    "HFBackend",
]
