"""The Dockerfile, docker-compose.yml, Procfile and lock files hold together.

No container engine runs here: the files are parsed and what they name is checked against the
repository (files COPY'd, the lock file, the `salesbot` commands they run) so a renamed
command, a moved file or a new package breaks this test instead of a deploy.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from bot.cli import app

ROOT = Path(__file__).resolve().parents[2]


# --- Dockerfile ---------------------------------------------------------------------------


@dataclass
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and the rest of its line."""

    keyword: str
    rest: str


@dataclass
class Stage:
    """A build stage: its base image, its name and its instructions."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """This stage's instructions with this keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Return the global ARG defaults and the stages of a Dockerfile.

    Handles what this project's Dockerfile uses: comments, blank lines and backslash
    continuations; each stage starts at FROM.
    """
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=_expand(base, args), name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def _exec_form(rest: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    words = json.loads(rest)
    assert isinstance(words, list), rest
    assert all(isinstance(w, str) for w in words), rest
    return words


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps a path out of the build context (its simple patterns)."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").removeprefix("**/").rstrip("/")
        parts = Path(path).parts
        hit = any(
            fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))
        ) or fnmatch.fnmatch(Path(path).name, pattern)
        if hit:
            ignored = not negate
    return ignored


def test_the_image_is_built_in_two_stages_on_a_slim_base(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    runtime = stages[-1]
    assert "slim" in runtime.base, f"the runtime stage runs on a slim image, not {runtime.base}"
    assert runtime.base.startswith("python:3.11"), "the image runs the Python the locks are for"
    names = {s.name for s in stages[:-1]}
    for copy in runtime.all("COPY"):
        source = re.search(r"--from=(\S+)", copy.rest)
        if source:
            assert source[1] in names, f"COPY --from={source[1]} names no earlier stage"


def test_every_copied_file_exists_and_reaches_the_build(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    copied: list[str] = []
    for stage in stages:
        for copy in stage.all("COPY"):
            if "--from=" in copy.rest:
                continue
            words = [w for w in shlex.split(copy.rest) if not w.startswith("--")]
            assert len(words) >= 2, f"COPY {copy.rest}: a source and a destination"
            copied.extend(words[:-1])
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert not _dockerignored(source), f".dockerignore keeps {source} out of the build"


def test_every_package_of_the_project_is_copied(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    """A package added to pyproject's list but not to the Dockerfile would be missing."""
    _, stages = dockerfile
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.removesuffix("*") for p in patterns}
    copied = {shlex.split(c.rest)[0].rstrip("/") for s in stages for c in s.all("COPY")}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    readme = pyproject["project"]["readme"]
    assert any(readme in shlex.split(c.rest) for s in stages for c in s.all("COPY"))


def test_dependencies_install_from_the_hashed_runtime_lock(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    installs = [r.rest for s in stages for r in s.all("RUN") if "pip install" in r.rest]
    locked = [cmd for cmd in installs if " -r " in cmd]
    assert all("--require-hashes" in cmd for cmd in locked), "every lock installs hashes checked"
    lock_names = sorted(Path(shlex.split(c)[shlex.split(c).index("-r") + 1]).name for c in locked)
    assert lock_names == ["requirements-build.lock", "requirements.lock"], (
        "the image carries the runtime lock (not the dev one) and the build backend's lock"
    )
    assert all((ROOT / name).is_file() for name in lock_names)
    project = [cmd for cmd in installs if cmd not in locked]
    assert project, "the project itself is installed"
    assert all("--no-deps" in cmd for cmd in project), (
        "the project itself installs with --no-deps: every dependency comes from the lock"
    )
    assert all("--no-build-isolation" in cmd for cmd in project), (
        "the project builds with the locked backend, not one fetched unchecked"
    )


def test_the_runtime_runs_as_an_unprivileged_user(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    users = stages[-1].all("USER")
    assert users, "the runtime stage sets a USER"
    user = users[-1].rest.split(":")[0]
    assert user not in {"root", "0"}, "the image must not run as root"


def test_the_healthcheck_asks_healthz_with_python(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    checks = stages[-1].all("HEALTHCHECK")
    assert len(checks) == 1
    command = checks[0].rest[checks[0].rest.index("CMD") + 3 :].strip()
    words = _exec_form(command)
    assert words[0] == "python", "the slim image has no curl: the check runs Python"
    assert "/healthz" in words[-1]
    compile(words[-1], "<healthcheck>", "exec")  # the inline program is valid Python


def test_the_image_serves_on_3000_with_salesbot_web(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    assert [e.rest for e in runtime.all("EXPOSE")] == ["3000"]
    env = " ".join(e.rest for e in runtime.all("ENV"))
    assert "HOST=0.0.0.0" in env, "inside a container the server listens on every interface"
    cmd = _exec_form(runtime.all("CMD")[-1].rest)
    assert cmd[:2] == ["salesbot", "web"]
    _assert_salesbot_command(cmd)


# --- salesbot commands --------------------------------------------------------------------


def _assert_salesbot_command(words: list[str]) -> None:
    """Parse a `salesbot …` command line with the real command-line app; fail if it would."""
    assert words[0] == "salesbot", f"{words} does not run salesbot"
    command: Any = typer.main.get_command(app)
    args = list(words[1:])
    path = ["salesbot"]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in command.commands, f"`{' '.join(path)}` has no sub-command {name!r}"
        command = command.commands[name]
        path.append(name)
    assert not hasattr(command, "commands"), f"`{' '.join(path)}` needs a sub-command"
    command.make_context(" ".join(path), args)  # raises on an unknown option or a bad value


def _procfile() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            kind, _, command = line.partition(":")
            entries[kind.strip()] = command.strip()
    return entries


def test_the_procfile_migrates_on_release_and_runs_web_and_worker() -> None:
    entries = _procfile()
    assert set(entries) == {"release", "web", "worker"}
    assert shlex.split(entries["release"]) == ["salesbot", "db", "upgrade"]
    for kind, command in entries.items():
        # What the platform's shell would substitute.
        expanded = command.replace("$PORT", "5000").replace("${WEB_CONCURRENCY:-2}", "2")
        assert "$" not in expanded, f"Procfile {kind}: unexpected variable in {command!r}"
        words = shlex.split(expanded)
        assert words[:2] == ["salesbot", kind if kind != "release" else "db"]
        _assert_salesbot_command(words)


# --- docker-compose.yml -------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_postgres_15_with_a_volume_and_a_healthcheck(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert db["image"] == "postgres:15"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], f"the volume {volume} is not declared"


def test_compose_services_depend_on_services_that_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"db", "migrate", "web", "worker"} <= set(services)
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on {needed}, which is not a service"


def test_web_and_worker_wait_for_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no", "the migration runs once"
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["db"]["condition"] == "service_healthy", name


def test_compose_commands_are_salesbot_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["salesbot", "db", "upgrade"]
    for name in ("migrate", "web", "worker"):
        service = services[name]
        assert service["build"] == ".", f"{name} runs the image this repository's Dockerfile makes"
        assert service["env_file"] == ".env"
        assert "@db:5432/" in service["environment"]["DATABASE_URL"], name
        _assert_salesbot_command(service["command"])
    assert services["web"]["environment"]["HOST"] == "0.0.0.0"
    for name in ("migrate", "worker"):
        assert services[name]["healthcheck"] == {"disable": True}, (
            f"{name} serves no HTTP: the image's /healthz check must be off"
        )


# --- lock files ---------------------------------------------------------------------------


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_the_locks_pin_every_package_with_hashes_and_agree() -> None:
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    for path in (ROOT / "requirements.lock", ROOT / "requirements-dev.lock"):
        text = path.read_text(encoding="utf-8")
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
        for block in blocks:
            if re.match(r"^[A-Za-z0-9]", block):
                name = block.split()[0]
                assert "==" in name, f"{path.name}: {name} is not pinned"
                assert "--hash=sha256:" in block, f"{path.name}: {name} has no hash"
    assert set(runtime) <= set(dev)
    differing = {name for name in runtime if runtime[name] != dev[name]}
    assert not differing, f"the two locks pin these differently: {sorted(differing)}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = pyproject["project"]["dependencies"]
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ]", requirement)[0]).lower()
        assert name in runtime, f"{name} (pyproject) is not in requirements.lock"
    assert "torch" not in dev


def test_every_data_file_of_the_packages_is_installed() -> None:
    """The image installs the project as a wheel (not editable): a template, data file or
    migration that pyproject's package-data does not name would be missing from it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data: dict[str, list[str]] = pyproject["tool"]["setuptools"].get("package-data", {})
    # A key names a package, dotted for a subpackage ("sandbox.console").
    patterns = [
        f"{package.replace('.', '/')}/{glob}"
        for package, globs in package_data.items()
        for glob in globs
    ]
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    missing: list[str] = []
    for package in {p.removesuffix("*") for p in includes}:
        for path in (ROOT / package).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in relative:
                continue
            # setuptools' package-data globs are relative to the package that holds the file.
            if not any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
                missing.append(relative)
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject: {missing}"
