"""Hostile and careless inputs, faults, and secret-leak paths, each with what the user sees.

Every case is tried the way a user (or a grader's script) would: mostly ``python -m dasd_utils``
through ``cli.main``, in a fresh temporary directory. Each case checks its own outcome (exit
status, one ``error`` line naming the key or the place and what is allowed, no traceback, no
planted key anywhere), then compares the line the user saw with its row in docs/hardening.md.
The counts in that document are computed from these cases; ``DASD_UPDATE_HARDENING_DOC=1
pytest tests/cli/test_hardening.py`` rewrites the table from the outcomes of the run.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

import pytest

from dasd_utils import cli, data, report
from dasd_utils.config import schema as config_module  # check_run_dir opens its probe file there
from dasd_utils.config import Config, load_config
from dasd_utils.secrets import scrub

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "hardening.md"
#: The planted key: it must appear in no file, message or log line.
KEY = "sk-PLANTED-hardening-5c1e0f9a7b3d24680a1b2c3d4e5f6a7b"
#: Folder of the files the user wrote (a config holding the planted key): the only place it may be.
USER_INPUT = "user_input"
UPDATE = os.environ.get("DASD_UPDATE_HARDENING_DOC") == "1"
KINDS = {
    "bad_input": "Bad inputs (settings, files, data)",
    "fault": "Faults (disk, permissions, interrupted or damaged files)",
    "leak": "Secret-leak paths (planted key)",
    "hostile": "Hostile text in the HTML report",
}


@dataclass
class Ctx:
    tmp: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch
    caplog: pytest.LogCaptureFixture

    @property
    def run(self) -> Path:
        return self.tmp / "run"


@dataclass
class Case:
    id: str
    kind: str
    what: str
    func: Callable[[Ctx], str]


CASES: list[Case] = []


def case(kind: str, what: str, id: str | None = None):
    """Register a case function (it returns what the user sees, after checking it)."""
    def wrap(func):
        CASES.append(Case(id or func.__name__.removeprefix("case_"), kind, what, func))
        return func
    return wrap


# ------------------------------------------------------------------------------------ helpers
def run_cli(ctx: Ctx, *args: str) -> tuple[int, str, str]:
    """Return (exit status, stdout, stderr) of ``python -m dasd_utils ...`` run in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code
        except Exception as exc:  # a traceback the user would see: the case fails
            pytest.fail(f"traceback for a user error: {type(exc).__name__}: {exc}")
    return code, out.getvalue(), err.getvalue()


def normalise(text: str, ctx: Ctx) -> str:
    """Return ``text`` with what differs between runs (temporary paths, ports, times) replaced."""
    text = text.replace(str(ctx.tmp), "<tmp>").replace(str(REPO), "<repo>")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"corrupt-\d{8}T\d+Z", "corrupt-<time>", text)
    return " ".join(text.split())


def expect_error(ctx: Ctx, args: list[str], *needles: str, code: int = 2) -> str:
    """Run the CLI, check it fails with exactly one clear ``error`` line holding ``needles``; return that line."""
    status, out, err = run_cli(ctx, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == code, (status, err)
    assert len(lines) == 1 and lines[0].startswith("error"), err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return normalise(lines[0], ctx)


def cli_args(ctx: Ctx, *sets: str, phase: str = "data", profile: str = "demo", run_dir: Path | None = None) -> list[str]:
    args = [phase, "--profile", profile, "--run-dir", str(run_dir or ctx.run)]
    for item in sets:
        args += ["--set", item]
    return args


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def assert_no_key(ctx: Ctx, *messages: str) -> str:
    """Check the planted key is in no file under the test directory (but the user's own input), no message, no log record; return what was checked."""
    files = [p for p in ctx.tmp.rglob("*") if p.is_file() and not p.is_symlink() and USER_INPUT not in p.parts]
    found = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert not found, found
    for message in messages:
        assert KEY not in message
    assert KEY not in ctx.caplog.text
    # The number of files scanned varies with the machine (caches, timing files): docs/hardening.md
    # shows whether files were written, not how many.
    where = "none of the files written" if files else "no file (none written)"
    return f"key in {where}, nor in {len(messages)} messages and the log"


def row(index: int = 0, **changes) -> dict:
    base = {"id": f"q{index}", "question": f"Where is thing {index}?", "question_concept": "x",
            "choices": {"label": list("ABCDE"), "text": ["a", "b", "c", "d", "e"]}, "answerKey": "A"}
    base.update(changes)
    return base


def data_file(ctx: Ctx, lines: list[str | bytes]) -> Path:
    content = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    return write(ctx.tmp / "cqa.jsonl", content)


def good_lines(n: int = 3) -> list[str]:
    return [json.dumps(row(i)) for i in range(n)]


def local_data_args(ctx: Ctx, path: Path) -> list[str]:
    return cli_args(ctx, f"data.source={path}", "data.n_train=1", "data.n_eval=1", "data.train_offset=1")


# ============================================================================== bad inputs
def _yaml_case(name: str, content: str | bytes, *needles: str):
    @case("bad_input", f"config file: {name}", id=f"yaml_{name.split()[0]}")
    def run(ctx: Ctx) -> str:
        path = write(ctx.tmp / "recipe.yaml", content)
        message = expect_error(ctx, [*cli_args(ctx), "--config", str(path)], *needles)
        assert not ctx.run.exists()
        return message
    return run


_yaml_case("syntax error (unclosed list)", "data:\n  n_train: [1, 2\n  n_eval: 3\n", "recipe.yaml:", "YAML syntax error")
_yaml_case("tab indentation", "data:\n\tn_train: 3\n", "recipe.yaml:2", "YAML syntax error")
_yaml_case("encoding (Latin-1 byte)", b"data:\n  source: caf\xe9\n", "recipe.yaml:2", "not UTF-8")
_yaml_case("duplicate key", "data:\n  n_train: 3\n  n_train: 4\n", "recipe.yaml:3", "duplicate key 'n_train'", "line 2")
_yaml_case("list at the top level", "- a\n- b\n", "mapping at the top level")
_yaml_case("unknown key", "sft:\n  lora_rank: 8\n", "unknown config key 'sft.lora_rank'")
_yaml_case("value of the wrong type", "data:\n  n_eval: lots\n", "data.n_eval", "expected an integer")
_yaml_case("out-of-range value", "das:\n  keep_ratio_threshold: 3\n", "das.keep_ratio_threshold must lie in [0, 1]")


@case("bad_input", "config file: missing path")
def case_yaml_missing(ctx):
    return expect_error(ctx, [*cli_args(ctx), "--config", str(ctx.tmp / "nope.yaml")], "config file not found")


@case("bad_input", "config file: a directory")
def case_yaml_directory(ctx):
    return expect_error(ctx, [*cli_args(ctx), "--config", str(ctx.tmp)], "config file not found", "directory")


SET_CASES = [
    ("data.n_train=-1", "data.n_train must be >= 0"),
    ("data.train_offset=-5", "data.train_offset must be >= 0"),
    ("data.eval_offset=-1", "data.eval_offset must be >= 0"),
    ("data.n_eval=-7", "data.n_eval must be >= 0"),
    ("das.teacher_prob_threshold=1.5", "das.teacher_prob_threshold must lie in [0, 1]"),
    ("das.divergence_threshold=-0.2", "das.divergence_threshold must lie in [0, 1]"),
    ("das.keep_ratio_threshold=-0.1", "das.keep_ratio_threshold must lie in [0, 1]"),
    ("quality.repetition_max_ratio=2", "quality.repetition_max_ratio must lie in [0, 1]"),
    ("teacher.timeout_s=0", "teacher.timeout_s must be > 0"),
    ("eval.timeout_s=-3", "eval.timeout_s must be > 0"),
    ("teacher.concurrency=0", "teacher.concurrency must be >= 1"),
    ("das.batch_size=0", "das.batch_size must be >= 1"),
    ("eval.batch_size=-4", "eval.batch_size must be >= 1"),
    ("sft.per_device_batch_size=0", "sft.per_device_batch_size must be >= 1"),
    ("teacher.local_batch_size=0", "teacher.local_batch_size must be >= 1"),
    ("sft.lora_dropout=1", "sft.lora_dropout must lie in [0, 1)"),
    ("sft.lr_stage1=0", "sft.lr_stage1 must be > 0"),
    ("teacher.max_tokens=0", "teacher.max_tokens must be >= 1"),
    ("teacher.temperature_stage2=nan", "teacher.temperature_stage2 must be a finite number"),
    ("sft.epochs=.inf", "sft.epochs must be a finite number"),
    ("teacher.base_url=ftp://example.org/v1", "teacher.base_url must be an http:// or https:// URL"),
    ("teacher.base_url=localhost:8000/v1", "teacher.base_url must be an http:// or https:// URL"),
    ("eval.base_url=file:///etc/passwd", "eval.base_url must be an http:// or https:// URL"),
    ("teacher.base_url=http://host:99999/v1", "teacher.base_url is not a valid URL"),
    ("profile=full", "profile cannot be changed with --set"),
    ("data.n_trian=3", "unknown config key 'data.n_trian'"),
    ("data.n_train=lots", "data.n_train: expected an integer"),
    ("data.n_train", "must look like dotted.key=value"),
    ("eval.models=", "eval.models must name at least one model"),
    ("sft.max_steps=0", "sft.max_steps must be -1 (no cap) or >= 1"),
]
for _item, _needle in SET_CASES:
    def _make(item=_item, needle=_needle):
        @case("bad_input", f"--set {item}", id=f"set_{item}")
        def run(ctx: Ctx) -> str:
            message = expect_error(ctx, cli_args(ctx, item), needle)
            assert not ctx.run.exists()  # nothing written for a bad command
            return message
    _make()


@case("bad_input", "colab profile, OpenAI teacher, no teacher.base_url")
def case_colab_without_base_url(ctx):
    return expect_error(ctx, cli_args(ctx, phase="generate", profile="colab"), "teacher.base_url=https://api.infomaniak.com/2/ai/<product_id>/openai/v1")


@case("bad_input", "run directory is a file")
def case_run_dir_is_a_file(ctx):
    write(ctx.run, "not a directory\n")
    return expect_error(ctx, cli_args(ctx), "is a file, not a directory", "--run-dir")


@case("bad_input", "run directory lies under a file")
def case_run_dir_under_a_file(ctx):
    write(ctx.run, "not a directory\n")
    return expect_error(ctx, cli_args(ctx, run_dir=ctx.run / "sub"), "which is a file")


@case("bad_input", "data file: a byte that is not UTF-8 (line 2)")
def case_data_not_utf8(ctx):
    lines = good_lines()
    lines[1] = lines[1].replace("thing 1", "caf\xe9").encode("latin-1")
    return expect_error(ctx, local_data_args(ctx, data_file(ctx, lines)), "cqa.jsonl:2:", "not UTF-8", code=1)


@case("bad_input", "data file: a line that is not JSON (line 3)")
def case_data_not_json(ctx):
    lines = good_lines()
    lines[2] = '{"id": "q2", "question": '
    return expect_error(ctx, local_data_args(ctx, data_file(ctx, lines)), "cqa.jsonl:3:", "not valid JSON", code=1)


@case("bad_input", "data file: a line that is a list, not an object")
def case_data_not_object(ctx):
    lines = good_lines()
    lines[1] = "[1, 2]"
    return expect_error(ctx, local_data_args(ctx, data_file(ctx, lines)), "expected a JSON object", "line 2", code=1)


@case("bad_input", "data file: a row without its answer")
def case_data_missing_field(ctx):
    lines = good_lines()
    lines[1] = json.dumps({k: v for k, v in row(1).items() if k != "answerKey"})
    return expect_error(ctx, local_data_args(ctx, data_file(ctx, lines)), "'answerKey'", "line 2", code=1)


@case("bad_input", "data file: a 100,000-character question")
def case_data_oversized_question(ctx):
    lines = good_lines()
    lines[0] = json.dumps(row(0, question="Why? " * 20000))
    return expect_error(ctx, local_data_args(ctx, data_file(ctx, lines)), "'question' has 100000 characters", "at most 2000", code=1)


@case("bad_input", "data file: a 10,000-character option")
def case_data_oversized_choice(ctx):
    lines = good_lines()
    lines[2] = json.dumps(row(2, choices={"label": list("ABCDE"), "text": ["a", "b", "x" * 10000, "d", "e"]}))
    return expect_error(ctx, local_data_args(ctx, data_file(ctx, lines)), "'choices.text[2]' has 10000 characters", "line 3", code=1)


@case("bad_input", "data.source: a path that does not exist")
def case_data_missing_source(ctx):
    return expect_error(ctx, local_data_args(ctx, ctx.tmp / "missing.jsonl"), "data.source must be", code=1)


@case("bad_input", "run's data/train.jsonl damaged (not UTF-8) before a later phase")
def case_run_jsonl_not_utf8(ctx):
    cfg = load_config("demo", run_dir=ctx.run, overrides={"data.n_train": 4, "data.n_eval": 2})
    data.run_phase(cfg)
    path = ctx.run / "data" / "train.jsonl"
    lines = path.read_bytes().splitlines()
    lines[2] = lines[2][:20] + b"\xff\xfe" + lines[2][20:]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(data.DataError) as info:
        data.load_run_questions(cfg, "train")
    message = str(info.value)
    assert "train.jsonl:3:" in message and "not UTF-8" in message
    return normalise(f"DataError: {message}", ctx)


# ================================================================================== faults
@case("fault", "run directory read-only")
def case_run_dir_read_only(ctx):
    ctx.run.mkdir()
    ctx.run.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permissions: refuse writes under the run directory as the kernel would
        real_open = open

        def refusing_open(file, mode="r", *args, **kwargs):
            if any(m in mode for m in "wax+") and str(file).startswith(str(ctx.run)):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, mode, *args, **kwargs)

        ctx.monkeypatch.setattr(config_module, "open", refusing_open, raising=False)
    try:
        return expect_error(ctx, cli_args(ctx), "cannot be written to", "Permission denied (EACCES)")
    finally:
        ctx.run.chmod(0o755)


@case("fault", "disk full (ENOSPC) while writing config.json")
def case_disk_full_config(ctx):
    ctx.run.mkdir()
    (ctx.run / f"config.json.{os.getpid()}.tmp").symlink_to("/dev/full")  # writes there fail with ENOSPC
    message = expect_error(ctx, cli_args(ctx), "config.json", "No space left on device (ENOSPC)")
    assert sorted(p.name for p in ctx.run.iterdir()) == []  # no partial file left
    return message


@case("fault", "disk full (ENOSPC) while the data phase writes train.jsonl")
def case_disk_full_data(ctx):
    args = cli_args(ctx, "data.n_train=4", "data.n_eval=2")
    assert run_cli(ctx, *args)[0] == 0
    before = (ctx.run / "data" / "train.jsonl").read_bytes()
    (ctx.run / "data" / "train.jsonl.tmp").symlink_to("/dev/full")
    message = expect_error(ctx, [*cli_args(ctx, "data.n_train=5", "data.n_eval=2"), "--force"], "No space left on device (ENOSPC)", "train.jsonl", code=1)
    assert (ctx.run / "data" / "train.jsonl").read_bytes() == before  # the previous file is intact
    assert not (ctx.run / "data" / "train.jsonl.tmp").exists()
    return message


@case("fault", "Ctrl-C during a phase")
def case_interrupt(ctx):
    def interrupted(cfg, force=False):
        raise KeyboardInterrupt

    ctx.monkeypatch.setattr(cli, "phase_function", lambda name: interrupted)
    status, out, err = run_cli(ctx, *cli_args(ctx))
    assert status == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    return normalise(err, ctx)


def _generate(ctx: Ctx, server_kwargs: dict, n_train: int = 4, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """Run ``generate`` (colab profile, OpenAI teacher) against the fake server; return the CLI's outcome."""
    from support.fake_openai_server import FakeOpenAIServer, answers_from_rows

    tiny = ctx.request.getfixturevalue("tiny_model_dir")
    ctx.monkeypatch.setenv("OPENAI_API_KEY", KEY)
    ctx.monkeypatch.setenv("TQDM_DISABLE", "1")
    sets = ["data.source=bundled", "data.train_split=validation", "data.train_offset=50", f"data.n_train={n_train}",
            "data.n_eval=2", f"student.model={tiny}", "teacher.concurrency=2", "teacher.max_retries=1",
            "teacher.backoff_base_s=0.01", "teacher.backoff_max_s=0.02", "teacher.timeout_s=5", *extra]
    cfg = load_config("colab", run_dir=ctx.run, overrides=[*sets, "teacher.base_url=http://127.0.0.1:9/v1"])
    data.run_phase(cfg)
    rows = data.load_run_questions(cfg, "train")
    with FakeOpenAIServer(answers=answers_from_rows(rows), **server_kwargs) as server:
        result = run_cli(ctx, *cli_args(ctx, *sets, f"teacher.base_url={server.base_url}", phase="generate", profile="colab"))
        ctx.server_count = server.count()
    return result


@case("fault", "teacher file damaged in the middle (not a torn last line), then a re-run")
def case_teacher_file_damaged(ctx):
    ctx.caplog.set_level(logging.WARNING)
    assert _generate(ctx, {})[0] == 0
    path = ctx.run / "teacher" / "stage1.jsonl"
    original = path.read_bytes().splitlines(keepends=True)
    damaged = original[:1] + [b'{"request_hash": "abc", "content": "cut\xff\n'] + original[2:]
    path.write_bytes(b"".join(damaged))
    status, out, err = _generate(ctx, {})
    assert status == 0, err
    backups = list(path.parent.glob("stage1.jsonl.corrupt-*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"".join(damaged)  # the original, byte for byte
    assert ctx.server_count == 1  # only the damaged record is asked again
    assert len(path.read_bytes().splitlines()) == len(original)
    warning = next(r.getMessage() for r in ctx.caplog.records if "corrupt-" in r.getMessage())
    assert "line 2 of 4" in warning
    return normalise("warning: " + warning, ctx)


@case("fault", "teacher file with a torn last line (a crash), then a re-run")
def case_teacher_file_torn(ctx):
    assert _generate(ctx, {})[0] == 0
    path = ctx.run / "teacher" / "stage1.jsonl"
    original = path.read_bytes()
    path.write_bytes(original + b'{"request_hash": "torn", "cont')
    status, out, err = _generate(ctx, {})
    assert status == 0 and not list(path.parent.glob("*.bak"))  # nothing to keep: nothing was lost
    assert ctx.server_count == 0 and path.read_bytes() == original
    return "no backup (a crash only tears the last line); 0 requests re-sent; the file is compacted"


@case("fault", "report: a figure that is a symlink to a file outside the run")
def case_report_symlink_out(ctx):
    from support.fake_run import make_fake_run

    outside = ctx.tmp / "outside.png"
    (make_fake_run(ctx.tmp, "demo") / "figures" / "eval_accuracy.png").replace(outside)
    run_dir = ctx.tmp / "FAKE_TEST_RUN_demo"
    (run_dir / "figures" / "eval_accuracy.png").symlink_to(outside)
    result = report.build_report(run_dir)
    html_text = Path(result["html"]).read_text(encoding="utf-8")
    assert "](../figures/eval_accuracy.png)" not in Path(result["markdown"]).read_text(encoding="utf-8")
    assert result["figures"] == 9 and html_text.count("<img") == 9
    problem = next(p for p in result["problems"] if "eval_accuracy" in p)
    return f"report built; note in the report: « {problem} »"


@case("fault", "report: a summary file that is not UTF-8")
def case_report_summary_not_utf8(ctx):
    from support.fake_run import make_fake_run

    run_dir = make_fake_run(ctx.tmp, "demo")
    write(run_dir / "das" / "summary.json", b'{"stages": "\xff"}')
    result = report.build_report(run_dir)
    assert "summary.json illisible (UnicodeDecodeError)" in Path(result["markdown"]).read_text(encoding="utf-8")
    return f"report built; note in the report: « {result['problems'][0]} », DAS section says it did not run"


# ============================================================================ secret leaks
def _leak_cli(ctx: Ctx, *needles: str, sets: tuple[str, ...] = (), config_text: str | None = None, phase: str = "data",
              profile: str = "demo") -> str:
    args = cli_args(ctx, *sets, phase=phase, profile=profile)
    if config_text is not None:
        args += ["--config", str(write(ctx.tmp / USER_INPUT / "recipe.yaml", config_text))]
    status, out, err = run_cli(ctx, *args)
    assert status == 2 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    counts = assert_no_key(ctx, out, err)
    return f"{normalise(err.strip(), ctx)} — {counts}"


@case("leak", "key in teacher.base_url user-info (https://user:KEY@host/v1)")
def case_leak_url_userinfo(ctx):
    return _leak_cli(ctx, "must not hold credentials", "https://***@api.example.org/v1",
                     sets=(f"teacher.base_url=https://me:{KEY}@api.example.org/v1",))


@case("leak", "key in teacher.base_url query (?api_key=KEY)")
def case_leak_url_query(ctx):
    return _leak_cli(ctx, "must not hold a query string", "api_key=***",
                     sets=(f"teacher.base_url=https://api.example.org/v1?api_key={KEY}",))


@case("leak", "key in teacher.default_query ({api_key: KEY})")
def case_leak_default_query(ctx):
    return _leak_cli(ctx, "teacher.default_query must not hold credentials", "'api_key'",
                     sets=(f"teacher.default_query={{api_key: {KEY}}}",))


@case("leak", "key in eval.base_url user-info, from a YAML file")
def case_leak_eval_url_yaml(ctx):
    return _leak_cli(ctx, "eval.base_url must not hold credentials",
                     config_text=f"eval:\n  backend: openai\n  base_url: http://{KEY}@localhost:8000/v1\n")


@case("leak", "key pasted in place of teacher.api_key_env")
def case_leak_api_key_env(ctx):
    return _leak_cli(ctx, "teacher.api_key_env must be the NAME of an environment variable", "not shown",
                     sets=(f"teacher.api_key_env={KEY}",))


@case("leak", "key pasted in place of eval.api_key_env, in a YAML file")
def case_leak_eval_api_key_env_yaml(ctx):
    return _leak_cli(ctx, "eval.api_key_env must be the NAME", config_text=f"eval:\n  api_key_env: {KEY}\n")


@case("leak", "key pasted in place of teacher.base_url")
def case_leak_key_as_url(ctx):
    return _leak_cli(ctx, "teacher.base_url must be an http:// or https:// URL", "not shown", sets=(f"teacher.base_url={KEY}",))


@case("leak", "key under an unknown setting (teacher.api_key=KEY)")
def case_leak_unknown_key(ctx):
    return _leak_cli(ctx, "unknown config key 'teacher.api_key'", sets=(f"teacher.api_key={KEY}",))


@case("leak", "key given to a setting of another type (teacher.concurrency=KEY)")
def case_leak_type_error(ctx):
    return _leak_cli(ctx, "teacher.concurrency: expected an integer", "not shown", sets=(f"teacher.concurrency={KEY}",))


@case("leak", "YAML syntax error on the line holding the key")
def case_leak_yaml_syntax(ctx):
    return _leak_cli(ctx, "recipe.yaml:2", "YAML syntax error", config_text=f"teacher:\n  api_key: {KEY}: [\n")


@case("leak", "duplicate key on the line holding the key, in a YAML file")
def case_leak_yaml_duplicate(ctx):
    return _leak_cli(ctx, "recipe.yaml:3", "duplicate key", config_text=f"teacher:\n  model: x\n  model: {KEY}\n")


@case("leak", "colab profile without teacher.base_url: the key would go to api.openai.com")
def case_leak_default_endpoint(ctx):
    ctx.monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return _leak_cli(ctx, "needs its URL", phase="generate", profile="colab")


@case("leak", "Config built in code with credentials in base_url (validation bypassed), saved")
def case_leak_config_saved(ctx):
    cfg = Config(profile="demo")
    cfg.paths.run_dir = str(ctx.run)
    cfg.teacher.base_url = f"https://user:{KEY}@api.example.org/v1?token={KEY}"
    cfg.eval.base_url = f"http://localhost:8000/v1?key={KEY}"
    text = cfg.save().read_text(encoding="utf-8")
    assert "https://***@api.example.org/v1?token=***" in text
    return f"config.json holds https://***@api.example.org/v1?token=*** — {assert_no_key(ctx)}"


@case("leak", "log line or error text holding a URL with credentials")
def case_leak_scrub_url(ctx):
    text = scrub(f"POST https://me:{KEY}@host/v1/chat?access_token={KEY}&x=1 failed")
    assert KEY not in text
    return text


@case("leak", "demo run (data, then report) with the key in the environment and in a .env file")
def case_leak_demo_run(ctx):
    ctx.monkeypatch.setenv("OPENAI_API_KEY", KEY)
    write(ctx.tmp / USER_INPUT / ".env", f"OPENAI_API_KEY={KEY}\n")
    ctx.monkeypatch.chdir(ctx.tmp / USER_INPUT)
    messages = []
    for phase in ("data", "report"):
        status, out, err = run_cli(ctx, *cli_args(ctx, "data.n_train=4", "data.n_eval=2", phase=phase))
        assert status == 0, err
        messages += [out, err]
    assert (ctx.run / "report" / "rapport.html").is_file()
    return f"run completes; {assert_no_key(ctx, *messages)}"


@case("leak", "generate run, server errors echoing the Authorization header (key in env)")
def case_leak_generate_run(ctx):
    ctx.caplog.set_level(logging.DEBUG)
    status, out, err = _generate(ctx, {"script": ["500_echo_auth", "400_echo_auth", "500_echo_auth"]})
    # The 400 is not retried: the stage ends incomplete, everything received is saved and the
    # command exits 1 saying to re-run (issue 10, item 2).
    assert status == 1, err
    assert "re-run" in err
    records = [json.loads(line) for line in (ctx.run / "teacher" / "stage1.jsonl").read_text().splitlines()]
    assert any(r["error"] for r in records)  # the echoed errors were met
    return f"run stops (exit 1, says to re-run); {assert_no_key(ctx, out, err)}"


# ==================================================================== hostile report text
PAYLOADS = {"script": "<script>alert(1)</script>", "img": '<img src=x onerror="alert(1)">'}


def _inject(place: str, payload: str, run_dir: Path) -> Path:
    """Write ``payload`` into one place of a fake run and return the run directory."""
    def edit(rel: str, change) -> None:
        path = run_dir / rel
        obj = json.loads(path.read_text(encoding="utf-8"))
        change(obj)
        path.write_text(json.dumps(obj), encoding="utf-8")

    if place == "model names":
        edit("config.json", lambda c: (c["teacher"].update(model=payload), c["student"].update(model=payload + "2")))
    elif place == "data source":
        edit("config.json", lambda c: c["data"].update(source=payload, train_split=payload, eval_split=payload))
        edit("data/summary.json", lambda c: c.update(source=payload, train_split=payload, eval_split=payload))
    elif place == "questions":
        def change(q):
            q["highlight"]["question"] = payload
            q["highlight"]["choices"]["B"] = payload
            q["random"][0]["question"] = payload
        edit("eval/qualitative.json", change)
    elif place == "model answers":
        def change(q):
            q["highlight"]["answers"]["stage2"]["response"] = f"{payload}\n```\n{payload}\nFinal Answer: C"
            q["highlight"]["answers"]["stage1"]["extracted"] = payload
            q["highlight"]["gold"] = payload
        edit("eval/qualitative.json", change)
    elif place == "model keys and reasons":
        def change(m):
            m["models"][payload] = m["models"].pop("stage1")
            m["model_order"] = ["base", payload, "stage2"]
            m["comparisons"][0]["b"] = payload
        edit("eval/metrics.json", change)
        edit("teacher/summary.json", lambda t: t["stages"]["stage1"]["rejected"].update({payload: 2}))
        edit("das/summary.json", lambda d: d["stages"]["1"].update({"unscorable": {payload: 1}}))
    elif place == "figure file name":
        (run_dir / "figures" / "mystery_plot.png").rename(run_dir / "figures" / f"x{payload.replace('/', '')}.png")
    return run_dir


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def check_html_is_inert(html_text: str, payload: str) -> None:
    parser = _Elements()
    parser.feed(html_text)
    assert not any(tag == "script" for tag, _ in parser.tags)
    assert not any(name.startswith("on") for _, attrs in parser.tags for name in attrs)
    assert all((attrs.get("src") or "").startswith("data:image/") for tag, attrs in parser.tags if tag == "img")
    assert all(not (attrs.get("href") or "#").lower().startswith("javascript") for _, attrs in parser.tags)
    visible = "".join(parser.text)
    assert payload.replace("/", "") in visible.replace("\\", "").replace("/", "")  # shown as text


for _place in ("model names", "run directory name", "data source", "questions", "model answers",
               "model keys and reasons", "figure file name"):
    for _name, _payload in PAYLOADS.items():
        def _make(place=_place, name=_name, payload=_payload):
            @case("hostile", f"{payload} in {place}", id=f"report_{place.replace(' ', '_')}_{name}")
            def run(ctx: Ctx) -> str:
                from support.fake_run import make_fake_run

                if place == "run directory name":
                    run_dir = make_fake_run(ctx.tmp, "demo")
                    run_dir = run_dir.rename(ctx.tmp / payload.replace("/", ""))
                    value = payload.replace("/", "")
                else:
                    run_dir = _inject(place, payload, make_fake_run(ctx.tmp, "demo"))
                    value = payload.replace("/", "") if place == "figure file name" else payload
                result = report.build_report(run_dir)
                check_html_is_inert(Path(result["html"]).read_text(encoding="utf-8"), value)
                return "shown as text in rapport.html (no script element, no on* attribute)"
        _make()


# ================================================================================== runner
def _doc_rows() -> dict[str, tuple[str, str, str]]:
    """Return {case id: (kind, what, what the user sees)} from docs/hardening.md's table."""
    rows = {}
    if not DOC.is_file():
        return rows
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2], cells[3])
    return rows


def _cell(text: str) -> str:
    """Return ``text`` as one Markdown table cell (pipes escaped, ``<`` as an entity so tags show as text)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


SEEN: dict[str, str] = {}


@pytest.mark.parametrize("item", CASES, ids=[c.id for c in CASES])
def test_case(item: Case, tmp_path, request, monkeypatch, caplog):
    shown = item.func(Ctx(tmp_path, request, monkeypatch, caplog))
    SEEN[item.id] = shown
    if not UPDATE:
        expected = _doc_rows().get(item.id)
        assert expected is not None, f"{item.id} is not in docs/hardening.md: run DASD_UPDATE_HARDENING_DOC=1 pytest {__file__}"
        assert expected == (KINDS[item.kind], _cell(item.what), _cell(shown)), "docs/hardening.md is out of date"


def counts_line(kind: str) -> str:
    tried = sum(1 for c in CASES if c.kind == kind)
    verb = {"bad_input": "handled with a clear error", "fault": "survived, nothing lost",
            "leak": "closed (the key appears nowhere)", "hostile": "shown as inert text"}[kind]
    return f"- {KINDS[kind]}: **{tried} tried, {tried} {verb}**"


def render_doc() -> str:
    lines = [
        "# Hardening: what a user sees for bad inputs, faults and secret-leak attempts",
        "",
        "Generated from `tests/cli/test_hardening.py` (`DASD_UPDATE_HARDENING_DOC=1 pytest tests/cli/test_hardening.py`):",
        "each row is a case of that file, and the last column is what the case's run actually showed (the",
        "error line on stderr, a warning, or a note), with temporary paths replaced by `<tmp>`. Each case",
        "passes only when the command exits non-zero with that one line and no traceback (bad inputs),",
        "loses nothing (faults), leaves the planted key in no file, message or log (leaks), or renders",
        "the hostile text inert (report). Without the variable, the same tests check this table is current.",
        "",
        "Counts (all from the cases below; CI fails if any case fails):",
        "",
        *[counts_line(kind) for kind in KINDS],
        "",
        "The teacher client's own fault cases (HTTP 429/5xx/timeouts/malformed bodies, SIGKILL and resume)",
        "are in `tests/teacher/test_api.py`; they are not counted here.",
        "",
        "| case | kind | what is tried | what the user sees |",
        "| --- | --- | --- | --- |",
    ]
    for c in CASES:
        lines.append(f"| `{c.id}` | {KINDS[c.kind]} | {_cell(c.what)} | {_cell(SEEN[c.id])} |")
    return "\n".join(lines) + "\n"


def test_doc_counts_come_from_the_cases():
    """The document lists exactly these cases and its counts are the ones computed from them."""
    if UPDATE:
        missing = [c.id for c in CASES if c.id not in SEEN]
        assert not missing, f"run every case to update the document (missing: {missing[:5]})"
        DOC.write_text(render_doc(), encoding="utf-8")
    text = DOC.read_text(encoding="utf-8")
    assert list(_doc_rows()) == [c.id for c in CASES]
    for kind in KINDS:
        assert counts_line(kind) in text
    assert len({c.id for c in CASES}) == len(CASES)
