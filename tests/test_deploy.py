"""The deployment files: docker-compose.yml valid against the Compose Specification's schema and
shaped as docs/deploy.md says; the Dockerfile's image runs the same console script as users;
.env.example names every setting."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft201909Validator

from rag.settings import Settings

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_spec(compose: dict) -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    errors = sorted(Draft201909Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_does_catch_mistakes(compose: dict) -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["db"]["healthcheck"]["retries"] = "many"
    broken["services"]["app"]["portz"] = ["8501"]
    assert len(list(Draft201909Validator(schema).iter_errors(broken))) >= 2


@pytest.mark.slow  # runs the docker CLI, a process of its own
@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_compose_config_accepts_it_when_the_cli_has_compose(tmp_path: Path) -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker CLI here has no compose plugin")
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=x\nRAGQA_CHECKPOINT_DIR=/tmp\n")
    out = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(env),
                          "--profile", "cpu", "--profile", "gpu", "--profile", "vllm", "--profile", "ingest",
                          "config", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_compose_services_are_wired_as_documented(compose: dict) -> None:
    s = compose["services"]
    assert set(s) == {"db", "app", "app-gpu", "api", "api-gpu", "vllm", "ingest"}
    assert s["app"]["ports"] == ["${RAGQA_BIND:-127.0.0.1}:${RAGQA_PORT:-8501}:8501"]  # localhost by default
    assert s["app"]["command"][:1] == ["ui"] and s["ingest"]["command"][:2] == ["ingest", "/inbox"]
    for name in ("app", "app-gpu", "ingest"):
        assert s[name]["depends_on"]["db"]["condition"] == "service_healthy"
        assert "@db:5432/" in s[name]["environment"]["RAGQA_DATABASE_URL"]
        assert "ragqa-data:/data" in s[name]["volumes"]
    assert "pg_isready" in " ".join(s["db"]["healthcheck"]["test"])
    assert any(v.startswith("ragqa-db:") for v in s["db"]["volumes"]) and "ragqa-db" in compose["volumes"]
    assert s["ingest"]["profiles"] == ["ingest"] and s["vllm"]["profiles"] == ["vllm"]
    assert s["app-gpu"]["profiles"] == ["gpu"] and s["app-gpu"]["environment"]["RAGQA_GENERATOR"] == "native"
    for name in ("app-gpu", "vllm"):
        [device] = s[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["count"] == 1 and "gpu" in device["capabilities"]
        assert any(v.endswith(":/models/gpt-oss-20b:ro") for v in s[name]["volumes"])
    assert "${POSTGRES_PASSWORD:?" in s["db"]["environment"]["POSTGRES_PASSWORD"]  # no default secret


def test_dockerfile_runs_the_console_script_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]  # the runtime stage
    assert "build-essential" not in final and "USER ragqa" in final
    assert "HF_HUB_OFFLINE=1" in final and "/_stcore/health" in final
    assert 'ENTRYPOINT ["ragqa"]' in final and 'CMD ["ui"' in final
    assert re.search(r"pip install .*torch==2\.13\.0", text)


def test_env_example_names_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*(RAGQA_[A-Z0-9_]+)=", text, re.M))
    wanted = {f"RAGQA_{name.upper()}" for name in Settings.model_fields}
    assert wanted <= named, sorted(wanted - named)
    assert re.search(r"^POSTGRES_PASSWORD=", text, re.M) and re.search(r"^COMPOSE_PROFILES=cpu$", text, re.M)
