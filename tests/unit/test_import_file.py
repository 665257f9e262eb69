"""Reading import files, mapping rows to jobs, and the checkpoint: what an operator would see."""

import json
from pathlib import Path

import pytest

from worker.importer.checkpoint import Checkpoint, CheckpointMismatch
from worker.importer.mapping import JobMapper, MappingError
from worker.importer.reading import FileFormat, UnreadableFile, read_header, read_rows

PASSWORD = "Sec-ret-Passw0rd!"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rows(
    path: Path, file_format: FileFormat = FileFormat.CSV
) -> list[tuple[int, dict, str | None]]:
    return [(r.line, r.fields, r.problem) for r in read_rows(path, file_format)]


def test_csv_rows_carry_the_line_they_start_on(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "u.csv",
        b'username,given_name\r\nann,Ann\r\n\r\nbob,"two\r\nlines"\r\ncarl,Carl\r\n',
    )
    assert rows(path) == [
        (2, {"username": "ann", "given_name": "Ann"}, None),
        (4, {"username": "bob", "given_name": "two\r\nlines"}, None),
        (6, {"username": "carl", "given_name": "Carl"}, None),
    ]


def test_a_bom_is_dropped_and_non_ascii_text_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "\ufeffusername,given_name\nzoë,Zoë\n日本,太郎\n".encode())
    assert read_header(path, FileFormat.CSV) == ["username", "given_name"]
    assert [r[1]["username"] for r in rows(path)] == ["zoë", "日本"]


def test_rows_that_cannot_be_read_say_why_without_their_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "u.csv",
        b"username,password\nann,secret-one\nbob\n\xff\xfeoops,secret-two\ncarl,a,secret-3\n",
    )
    found = rows(path)
    assert [(line, problem) for line, _, problem in found] == [
        (2, None),
        (3, "has 1 fields; the header has 2"),
        (4, "not UTF-8 text"),
        (5, "has 3 fields; the header has 2"),
    ]
    assert all(fields == {} for _, fields, problem in found if problem)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "is empty"),
        (b"username,username\n", "named twice: username"),
        (b"username,,email\n", r"column\(s\) 2 have no name"),
    ],
)
def test_a_file_without_a_usable_header_is_refused(
    tmp_path: Path, data: bytes, problem: str
) -> None:
    path = write(tmp_path, "u.csv", data)
    with pytest.raises(UnreadableFile, match=problem):
        read_rows(path, FileFormat.CSV)


def test_json_lines_rows(tmp_path: Path) -> None:
    lines = [
        json.dumps({"username": "ann", "email_verified": True}),
        "",
        "not json " + PASSWORD,
        "[1, 2]",
        json.dumps({"username": "zoë"}, ensure_ascii=False),
    ]
    path = write(tmp_path, "u.jsonl", ("\ufeff" + "\n".join(lines) + "\n").encode())
    assert rows(path, FileFormat.JSONL) == [
        (1, {"username": "ann", "email_verified": True}, None),
        (3, {}, "not valid JSON"),
        (4, {}, "a JSON list, not an object"),
        (5, {"username": "zoë"}, None),
    ]


def test_columns_map_to_the_job_and_its_maps() -> None:
    mapper = JobMapper("sign_up", "imp-1")
    mapped = mapper.map(
        7,
        {
            "username": "ann",
            "password": PASSWORD,
            "email": "ann@example.com",
            "custom:plan": "gold",
            "given_name": "",
            "validation_data.source": "crm",
            "client_metadata.campaign": "spring",
        },
    )
    assert mapped.problem is None
    job = mapped.job
    assert job is not None
    assert job.job_id == "imp-1:sign_up:7"
    assert job.user_attributes == {"email": "ann@example.com", "custom:plan": "gold"}
    assert job.validation_data == {"source": "crm"}
    assert job.client_metadata == {"campaign": "spring"}
    assert job.password.get_secret_value() == PASSWORD


def test_a_bad_row_gets_the_workers_reason_and_never_its_values() -> None:
    mapper = JobMapper("sign_up", "imp-1")
    mapped = mapper.map(3, {"username": "ann smith", "password": "has a space " + PASSWORD})
    assert mapped.job is None
    assert mapped.problem is not None
    assert "username" in mapped.problem
    assert "password" in mapped.problem
    assert "ann smith" not in mapped.problem
    assert PASSWORD not in mapped.problem


def test_a_type_without_a_place_for_a_column_ignores_it_and_says_so() -> None:
    mapper = JobMapper("forgot_password", "imp-1")
    mapped = mapper.map(2, {"username": "ann", "password": PASSWORD, "email": "a@example.com"})
    assert mapped.job is not None
    assert "password" not in mapped.job.model_dump()
    assert mapper.ignored_columns == {"password", "email"}


@pytest.mark.parametrize(
    ("job_type", "columns", "problem"),
    [
        ("sign_up", ["email", "password"], "no 'username' column"),
        ("sign_up", ["username", "email"], "needs a 'password' column"),
        ("forgot_password", ["username", "job_id"], "job_id: set by the import itself"),
    ],
)
def test_a_header_that_cannot_make_jobs_is_refused(
    job_type: str, columns: list[str], problem: str
) -> None:
    with pytest.raises(MappingError, match=problem):
        JobMapper(job_type, "imp-1").check_columns(columns)


def test_the_checkpoint_keeps_ranges_and_survives_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    checkpoint = Checkpoint(path, "imp-1", "sign_up", "abc")
    checkpoint.mark_sent([5, 3, 2, 4, 9, 10, 12])
    checkpoint.mark_sent([11])
    assert checkpoint.ranges == [[2, 5], [9, 12]]
    checkpoint.save()
    again = Checkpoint.load(path, "imp-1", "sign_up", "abc")
    assert [line for line in range(1, 14) if again.was_sent(line)] == [2, 3, 4, 5, 9, 10, 11, 12]
    assert again.sent_count == 8


@pytest.mark.parametrize(
    ("import_id", "job_type", "digest", "problem"),
    [
        ("imp-2", "sign_up", "abc", "belongs to import imp-1"),
        ("imp-1", "import_user", "abc", "belongs to import imp-1"),
        ("imp-1", "sign_up", "def", "another version of the file"),
    ],
)
def test_a_checkpoint_of_another_import_or_file_is_refused(
    tmp_path: Path, import_id: str, job_type: str, digest: str, problem: str
) -> None:
    path = tmp_path / "c.json"
    Checkpoint(path, "imp-1", "sign_up", "abc", [[2, 3]]).save()
    with pytest.raises(CheckpointMismatch, match=problem):
        Checkpoint.load(path, import_id, job_type, digest)
