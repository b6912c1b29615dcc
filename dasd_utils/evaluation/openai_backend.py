"""The OpenAI-compatible backend (vLLM with ``--enable-lora``, SGLang, TGI...): same chat messages, temperature 0."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from ..config import Config
from ..prompts import LETTERS, build_messages
from .generation import EvaluationError, progress_bar
from .loglik import LOGLIK_CONTINUATIONS, LoglikUnsupported, loglik_context
from .models import EvalModel

log = logging.getLogger(__name__)


class OpenAIBackend:
    """Any OpenAI-compatible server (vLLM with ``--enable-lora``, SGLang, TGI...), same chat messages.

    The server applies the model's chat template to the messages, so it must serve the same
    tokenizer as the one used for training. The key is read from the variable named by
    ``eval.api_key_env``; a local vLLM needs none (a placeholder is sent).
    """

    name = "openai"

    def __init__(self, cfg: Config):
        if not cfg.eval.base_url:
            raise ValueError("eval.backend=openai needs eval.base_url (e.g. http://localhost:8000/v1 for vLLM)")
        from openai import OpenAI

        from ..secrets import MissingAPIKey, get_api_key, install_log_scrubber, quiet_http_request_logs

        self.cfg = cfg
        install_log_scrubber()
        quiet_http_request_logs()  # one INFO line per request would bury the progress bar
        try:  # environment, then .env, then Colab secrets; the value is registered for scrubbing
            key = get_api_key(cfg.eval.api_key_env, getattr(cfg.teacher, "dotenv_path", None))
        except MissingAPIKey:
            key = None
            log.info("no key in %s: sending a placeholder (fine for a local vLLM server)", cfg.eval.api_key_env)
        self.client = OpenAI(
            base_url=cfg.eval.base_url,
            api_key=key or "EMPTY",
            max_retries=cfg.eval.max_retries,
            timeout=cfg.eval.timeout_s,
        )

    def served_name(self, spec: EvalModel) -> str:
        """Return the model name sent to the server for ``spec``."""
        if spec.name in self.cfg.eval.served_models:
            return self.cfg.eval.served_models[spec.name]
        return self.cfg.student.model if spec.adapter is None else spec.name

    def chat_template_kwargs(self) -> dict[str, Any] | None:
        """Return the ``chat_template_kwargs`` sent with each chat request (``eval.enable_thinking``), None for none.

        vLLM and SGLang pass them to the chat template: ``enable_thinking=False`` renders Qwen3's
        hybrid template in its non-thinking mode, as the hf backend does (:mod:`dasd_utils.chat`).
        """
        thinking = self.cfg.eval.enable_thinking
        return None if thinking is None else {"enable_thinking": bool(thinking)}

    def settings(self) -> dict[str, Any]:
        """Return what, besides the prompt and the model, changes the outputs (for the cache key)."""
        out = {"backend": "openai", "base": self.cfg.student.model}
        if self.chat_template_kwargs() is not None:
            out["chat_template_kwargs"] = self.chat_template_kwargs()
        return out

    def prompt_key(self, row: dict[str, Any]) -> str:
        """Return the messages sent (as JSON): the server applies the chat template."""
        return json.dumps(build_messages(row, self.cfg.system_prompt), ensure_ascii=False)

    def _error(self, exc: Exception) -> str:
        from ..secrets import scrub

        return scrub(f"{type(exc).__name__}: {exc}")

    def chunk_size(self) -> int:
        """Return how many items to request between two saves of the predictions file."""
        return max(32, 4 * self.cfg.eval.concurrency)

    def prompt_length(self, prompt: str) -> int:
        """Return the prompt's length in characters (only used to order requests)."""
        return len(prompt)

    def _run(self, fn, items: Sequence[Any], desc: str, progress: bool = True) -> list[tuple[Any, str | None]]:
        results: list[tuple[Any, str | None]] = [(None, None)] * len(items)

        def work(i: int) -> tuple[int, Any, str | None]:
            try:
                return i, fn(items[i]), None
            except Exception as exc:  # every failure is reported, none is dropped
                return i, None, self._error(exc)

        with ThreadPoolExecutor(max_workers=max(1, self.cfg.eval.concurrency)) as pool:
            bar = progress_bar(len(items), desc, progress)
            try:
                for i, value, error in pool.map(work, range(len(items))):
                    results[i] = (value, error)
                    bar.update(1)
            finally:
                bar.close()
        return results

    def generate(
        self, spec: EvalModel, rows: Sequence[dict[str, Any]], prompts: Sequence[str], progress: bool = True
    ) -> list[dict[str, Any]]:
        """Return greedy (temperature 0) chat completions for ``rows``; raises EvaluationError on failures."""
        model = self.served_name(spec)
        template_kwargs = self.chat_template_kwargs()
        extra = {"extra_body": {"chat_template_kwargs": template_kwargs}} if template_kwargs is not None else {}

        def one(row: dict[str, Any]) -> dict[str, Any]:
            resp = self.client.chat.completions.create(
                model=model,
                messages=build_messages(row, self.cfg.system_prompt),
                temperature=0.0,
                max_tokens=self.cfg.eval.max_new_tokens,
                **extra,
            )
            choice = resp.choices[0]
            usage = getattr(resp, "usage", None)
            return {
                "response": choice.message.content or "",
                "n_new_tokens": getattr(usage, "completion_tokens", None),
                "finish_reason": choice.finish_reason,
            }

        outcome = self._run(one, list(rows), f"génération {spec.name}", progress)
        errors = [e for _, e in outcome if e is not None]
        if errors:
            raise EvaluationError(
                f"{len(errors)} of {len(rows)} requests to {self.cfg.eval.base_url} (model {model!r}) failed; "
                f"first error: {errors[0]}. Predictions that succeeded are cached; re-run to retry the rest.",
                partial={i: value for i, (value, error) in enumerate(outcome) if error is None},
                first_error=f"model {model!r} at {self.cfg.eval.base_url}: {errors[0]}",
            ) from None
        return [value for value, _ in outcome]

    def loglik(self, spec: EvalModel, rows: Sequence[dict[str, Any]]) -> list[list[float]]:
        """Return the five continuation log-probabilities per question from ``/completions`` with ``echo``.

        The prompt ``context + continuation`` is echoed with its token log-probabilities
        (``echo=True, logprobs=1, max_tokens=1``, what lm-eval's ``local-completions`` and vLLM
        support). A server that returns no prompt log-probabilities raises LoglikUnsupported
        rather than scoring every choice 0.
        """
        model = self.served_name(spec)
        pairs = [(loglik_context(row), cont) for row in rows for cont in LOGLIK_CONTINUATIONS]

        def one(pair: tuple[str, str]) -> float:
            context, cont = pair
            prompt = context + cont
            resp = self.client.completions.create(
                model=model, prompt=prompt, echo=True, logprobs=1, max_tokens=1, temperature=0.0
            )
            lp = resp.choices[0].logprobs
            offsets = list(getattr(lp, "text_offset", None) or [])
            values = list(getattr(lp, "token_logprobs", None) or [])
            if not offsets or len(offsets) != len(values) or offsets[0] != 0:
                raise LoglikUnsupported("the server returned no prompt log-probabilities for echo=True")
            if len(context) not in offsets:
                raise LoglikUnsupported("the server's tokens do not split at the end of the context")
            total, counted = 0.0, 0
            for off, value in zip(offsets, values):
                if len(context) <= off < len(prompt):
                    if value is None:
                        raise LoglikUnsupported("a continuation token has no log-probability")
                    total += float(value)
                    counted += 1
            if counted == 0:
                raise LoglikUnsupported("no continuation token found in the echoed prompt")
            return total

        outcome = self._run(one, pairs, f"log-vraisemblance {spec.name}")
        errors = [e for _, e in outcome if e is not None]
        if errors:
            raise LoglikUnsupported(f"{len(errors)} of {len(pairs)} scoring requests failed; first error: {errors[0]}")
        flat = [value for value, _ in outcome]
        n = len(LETTERS)
        return [flat[i * n : (i + 1) * n] for i in range(len(rows))]


__all__ = [
    "OpenAIBackend",
]
