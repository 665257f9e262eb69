"""The pool's rules as DescribeUserPool gives them, checked on a row before it is sent."""

from worker.importer.pool_rules import PoolRules

POOL = {
    "Id": "eu-west-1_abc",
    "SchemaAttributes": [
        {"Name": "sub", "Required": True},
        {"Name": "email", "Required": True},
        {"Name": "given_name", "Required": False},
        {"Name": "custom:plan", "Required": False},
    ],
    "UsernameAttributes": ["email"],
    "UsernameConfiguration": {"CaseSensitive": False},
}


def test_the_description_gives_attributes_required_ones_and_case() -> None:
    rules = PoolRules.from_description(POOL)
    assert rules.required == {"email"}  # sub is Cognito's own
    assert {"custom:plan", "given_name", "nickname"} <= rules.attributes  # standard ones always
    assert rules.case_sensitive is False
    # A pool made through the API without the setting is case-sensitive.
    assert PoolRules.from_description({"Id": "x", "SchemaAttributes": []}).case_sensitive is True


def test_a_column_the_pool_lacks_is_refused_for_the_whole_file() -> None:
    rules = PoolRules.from_description(POOL)
    problem = rules.columns_problem(["username", "password", "email", "custom:tier", "foo"])
    assert problem == (
        "column(s) custom:tier, foo: not attributes of pool eu-west-1_abc (DescribeUserPool); "
        "Cognito would refuse every row"
    )
    assert rules.columns_problem(["username", "email", "validation_data.x", "custom:plan"]) is None


def test_rows_that_create_users_need_the_required_attributes_and_an_email_as_username() -> None:
    rules = PoolRules.from_description(POOL)
    row = {"username": "ann@example.com", "password": "x", "email": ""}
    assert rules.row_problem("sign_up", row) == "email: the pool requires it"
    assert rules.row_problem("forgot_password", {"username": "ann@example.com"}) is None
    assert rules.row_problem("sign_up", {"username": "ann", "email": "ann@example.com"}) == (
        "username: the pool signs users in by an email address, so it must be one"
    )
    good = {"username": "a@example.com", "email": "a@example.com"}
    assert rules.row_problem("sign_up", good) is None
