"""Secret scanning of pushed commits: what is found, and where (file and line)."""

from __future__ import annotations

from pathlib import Path

from bottle_engine.bundle.config import SecretBinding
from bottle_engine.bundle.gitgate.scan import (
    AddedLine,
    Finding,
    KnownSecret,
    added_lines,
    known_secrets,
    scan_commit_diff,
)

COMMIT = "c" * 40
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id
PRIVATE_KEY = [
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
    "-----END OPENSSH PRIVATE KEY-----",
]


def diff_adding(path: str, start: int, lines: list[str]) -> str:
    body = "\n".join("+" + line for line in lines)
    return (
        f"diff --git a/{path} b/{path}\n"
        "index 1111111..2222222 100644\n"
        f"--- a/{path}\n"
        f"+++ b/{path}\n"
        f"@@ -{start - 1},0 +{start},{len(lines)} @@\n"
        f"{body}\n"
    )


def test_added_lines_carry_the_new_files_line_numbers() -> None:
    diff = (
        diff_adding("src/a.py", 10, ["x = 1", "y = 2"])
        + "@@ -20 +22 @@\n-old\n+new\n"
        + "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n"
        + "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
    )

    assert list(added_lines(diff)) == [
        AddedLine("src/a.py", 10, "x = 1"),
        AddedLine("src/a.py", 11, "y = 2"),
        AddedLine("src/a.py", 22, "new"),
    ]


def test_an_aws_access_key_is_found_at_its_file_and_line() -> None:
    diff = diff_adding("deploy/settings.py", 7, ["region = 'eu-west-1'", f"key = '{AWS_KEY}'"])

    assert scan_commit_diff(COMMIT, diff, []) == [
        Finding(COMMIT, "deploy/settings.py", 8, "AWS Access Key")
    ]


def test_a_private_key_is_found_at_its_first_line() -> None:
    findings = scan_commit_diff(COMMIT, diff_adding("keys/id_ed25519", 1, PRIVATE_KEY), [])

    assert Finding(COMMIT, "keys/id_ed25519", 1, "Private Key") in findings


def test_ordinary_code_has_no_findings() -> None:
    diff = diff_adding("app.py", 1, ["def add(a, b):", "    return a + b"])

    assert scan_commit_diff(COMMIT, diff, []) == []


def test_the_bottles_own_secret_value_and_placeholder_are_found(tmp_path: Path) -> None:
    value_file = tmp_path / "github_token"
    value_file.write_text("plain-looking-value-42\n")
    secrets = known_secrets(
        [
            SecretBinding(
                "github_token", "BOTTLE_PLACEHOLDER_GH", ("api.github.com",), str(value_file)
            )
        ]
    )
    diff = diff_adding(
        "notes.md", 3, ["token: plain-looking-value-42", "also BOTTLE_PLACEHOLDER_GH"]
    )

    findings = scan_commit_diff(COMMIT, diff, secrets)

    assert [(f.line, f.kind) for f in findings] == [
        (3, "value of the bottle's secret 'github_token'"),
        (4, "placeholder of the bottle's secret 'github_token'"),
    ]
    assert all("plain-looking-value-42" not in f.describe() for f in findings)


def test_a_secret_file_that_is_not_mounted_still_leaves_the_placeholder_check() -> None:
    secrets = known_secrets([SecretBinding("t", "PH_T", (), "/nonexistent/secret")])

    assert secrets == [KnownSecret("PH_T", "placeholder of the bottle's secret 't'")]


def test_finding_description_names_commit_file_and_line() -> None:
    finding = Finding(COMMIT, "a/b.env", 4, "AWS Access Key")

    assert finding.describe() == f"commit {COMMIT[:12]}: a/b.env:4: AWS Access Key"
