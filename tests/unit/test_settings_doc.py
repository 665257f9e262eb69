"""The settings reference cannot drift: run --help and docs/settings.md come from the model."""

from worker.operations.settings_doc import DOC, help_text, markdown_table, setting_rows, table_in
from worker.settings import Settings


def test_every_setting_of_the_model_is_listed_with_a_meaning() -> None:
    listed = {row.variable for row in setting_rows()}
    aliases = {str(field.alias) for field in Settings.model_fields.values()}
    assert aliases <= listed
    assert {"COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_CLIENT_SECRET"} <= listed
    assert all(row.meaning for row in setting_rows())


def test_the_docs_table_is_the_generated_one() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert table_in(document) == markdown_table(), (
        "docs/settings.md is out of date: run `python -m worker.operations.settings_doc`"
    )


def test_help_has_one_line_per_setting_with_its_default() -> None:
    lines = help_text().splitlines()[1:]
    assert len(lines) == len(setting_rows())
    by_variable = {line.split()[0]: line for line in lines}
    assert "[64]" in by_variable["MAX_JOBS_IN_FLIGHT"]
    assert "[127.0.0.1]" in by_variable["HEALTH_HOST"]
    assert "[required]" in by_variable["JOBS_QUEUE_URL"]
