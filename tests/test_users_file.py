"""The users file: loading and its errors, adding, removing and listing users, file modes, and the dev material."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from workerctl import dev_material
from workerctl.store.users import (
    UsersFileError,
    add_user,
    hash_token,
    list_users,
    load_users,
    new_token,
    remove_user,
)

HASH_A = "a" * 64
HASH_B = "b" * 64


def hashes(path: Path) -> dict[str, str]:
    return {name: user.token_sha256 for name, user in load_users(path).items()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_one_sentence(error: UsersFileError, path: Path) -> None:
    message = str(error)
    assert str(path) in message
    assert "\n" not in message and message[:1].islower() and not message.endswith(".")


def test_hash_token_is_the_hex_sha256_of_the_utf8_bytes() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hash_token("é") == "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"  # not Latin-1


def test_new_tokens_are_long_url_safe_and_distinct() -> None:
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert len(token) == 43
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_an_empty_users_table_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text("# nobody yet\n[users]\n")
    assert hashes(path) == {}
    assert [name for name, _ in list_users(path)] == []


def test_load_users_reads_names_and_hashes(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(f'[users.alice]\ntoken_sha256 = "{HASH_A}"\n\n[users."b.o-b_2"]\ntoken_sha256 = "{HASH_B}"\n')
    assert hashes(path) == {"alice": HASH_A, "b.o-b_2": HASH_B}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", r"has no \[users\] table"),
        ("# only a comment\n", r"has no \[users\] table"),
        ("users = 3\n", r"defines `users` as a value, not as a \[users\] table"),
        ('[users]\n[people.alice]\ntoken_sha256 = "' + HASH_A + '"\n', r"top-level key 'people' besides \[users\]"),
        ("[users]\nalice = 3\n", r"'alice' in the users file .* is a value, not a \[users.NAME\] table"),
        ("[users.alice]\n", "'alice' in the users file .* has no token_sha256"),
        ("[users.alice]\ntoken_sha256 = 5\n", "not 64 lowercase hex characters"),
        (f'[users.alice]\ntoken_sha256 = "{HASH_A.upper()}"\n', "not 64 lowercase hex characters"),
        (f'[users.alice]\ntoken_sha256 = "{HASH_A[:63]}"\n', "not 64 lowercase hex characters"),
        (f'[users.alice]\ntoken_sha256 = "{HASH_A}0"\n', "not 64 lowercase hex characters"),
        (f'[users.alice]\ntoken_sha256 = "{"g" * 64}"\n', "not 64 lowercase hex characters"),
        (f'[users.alice]\ntoken_sha256 = "{HASH_A}"\ntoken = "secret"\n', "'alice' .* unknown key 'token'"),
        (f'[users."bad name"]\ntoken_sha256 = "{HASH_A}"\n', "'bad name' is not valid for the users file"),
        (f'[users."-dash"]\ntoken_sha256 = "{HASH_A}"\n', "'-dash' is not valid for the users file"),
        (f'[users.{"x" * 65}]\ntoken_sha256 = "{HASH_A}"\n', "is not valid for the users file"),
        (
            f'[users.alice]\ntoken_sha256 = "{HASH_A}"\n[users.bob]\ntoken_sha256 = "{HASH_A}"\n',
            "users 'alice' and 'bob' in the users file .* have the same token",
        ),
        ("[users]\nalice = \n", "is not valid TOML: .*line 2"),
        (f'[users.alice]\ntoken_sha256 = "{HASH_A}"\n[users.alice]\ntoken_sha256 = "{HASH_B}"\n', "not valid TOML"),
    ],
)
def test_load_users_refuses_a_malformed_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "users.toml"
    path.write_text(content)
    with pytest.raises(UsersFileError, match=problem) as caught:
        load_users(path)
    assert_one_sentence(caught.value, path)


def test_load_users_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(UsersFileError, match="does not exist") as caught:
        load_users(path)
    assert_one_sentence(caught.value, path)


def test_load_users_refuses_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "a-directory.toml"
    path.mkdir()  # unreadable as a file even for root, unlike chmod 000
    with pytest.raises(UsersFileError, match="cannot read the users file") as caught:
        load_users(path)
    assert_one_sentence(caught.value, path)


def test_load_users_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_bytes(b"[users]\n# caf\xe9\n")
    with pytest.raises(UsersFileError, match="not valid UTF-8") as caught:
        load_users(path)
    assert_one_sentence(caught.value, path)


def test_add_user_creates_a_private_file_storing_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "users.toml"
    token = add_user(path, "alice")
    text = path.read_text()
    assert mode(path) == 0o600
    assert text.startswith("#")
    assert token not in text
    assert hash_token(token) in text
    assert hashes(path) == {"alice": hash_token(token)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["users.toml"]  # no temporary file left


def test_add_user_keeps_the_existing_text_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    original = f'# our team\n[users]\n\n[users.alice]  # the admin\ntoken_sha256 = "{HASH_A}"'  # no final newline
    path.write_text(original)
    path.chmod(0o644)
    token = add_user(path, "bob.smith")
    text = path.read_text()
    assert text.startswith(original + "\n")
    assert token not in text
    assert hashes(path) == {"alice": HASH_A, "bob.smith": hash_token(token)}
    assert mode(path) == 0o600


def test_add_user_starts_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.touch()
    token = add_user(path, "alice")
    assert hashes(path) == {"alice": hash_token(token)}


@pytest.mark.parametrize("name", ["", "-alice", ".alice", "_alice", "al ice", "al/ice", "élise", "a" * 65, 'a"b'])
def test_add_user_refuses_a_bad_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / "users.toml"
    with pytest.raises(UsersFileError, match="is not valid for the users file") as caught:
        add_user(path, name)
    assert_one_sentence(caught.value, path)
    assert not path.exists()


@pytest.mark.parametrize("name", ["a", "A1", "0", "a.b.c", "a_b-c", "x" * 64])
def test_add_user_accepts_a_good_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / "users.toml"
    token = add_user(path, name)
    assert hashes(path) == {name: hash_token(token)}


def test_add_user_refuses_an_existing_user_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice")
    before = path.read_text()
    with pytest.raises(UsersFileError, match="already a user 'alice'") as caught:
        add_user(path, "alice")
    assert_one_sentence(caught.value, path)
    assert path.read_text() == before


def test_add_user_refuses_to_touch_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text("[users.alice]\n")
    with pytest.raises(UsersFileError, match="has no token_sha256"):
        add_user(path, "bob")
    assert path.read_text() == "[users.alice]\n"


def test_add_user_refuses_a_file_of_inline_tables(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    original = f'users = {{ alice = {{ token_sha256 = "{HASH_A}" }} }}\n'
    path.write_text(original)
    assert hashes(path) == {"alice": HASH_A}
    with pytest.raises(UsersFileError, match="cannot append user 'bob'") as caught:
        add_user(path, "bob")
    assert_one_sentence(caught.value, path)
    assert path.read_text() == original


def test_add_user_reports_a_directory_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = blocker / "users.toml"
    with pytest.raises(UsersFileError, match="cannot write the users file") as caught:
        add_user(path, "alice")
    assert_one_sentence(caught.value, path)


def test_remove_user_keeps_the_others_and_the_header(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text("# Our team's users.\n# Second line.\n\n[users]\n")
    tokens = {name: add_user(path, name) for name in ("carol", "alice", "bob.b")}
    path.chmod(0o644)
    remove_user(path, "alice")
    text = path.read_text()
    assert text.startswith("# Our team's users.\n# Second line.\n")
    assert hashes(path) == {"carol": hash_token(tokens["carol"]), "bob.b": hash_token(tokens["bob.b"])}
    assert [name for name, _ in list_users(path)] == ["bob.b", "carol"]
    assert not any(token in text for token in tokens.values())
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.toml"]


def test_removing_the_last_user_leaves_a_valid_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice")
    remove_user(path, "alice")
    assert hashes(path) == {}
    assert path.read_text().startswith("#")
    add_user(path, "bob")
    assert [name for name, _ in list_users(path)] == ["bob"]


def test_remove_user_refuses_an_unknown_user(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    add_user(path, "alice")
    before = path.read_text()
    with pytest.raises(UsersFileError, match="no user 'bob'") as caught:
        remove_user(path, "bob")
    assert_one_sentence(caught.value, path)
    assert path.read_text() == before


def test_remove_user_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match="does not exist"):
        remove_user(tmp_path / "users.toml", "alice")


def test_list_users_is_sorted(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    for name in ("zed", "Alice", "bob", "0day"):
        add_user(path, name)
    assert [name for name, _ in list_users(path)] == ["0day", "Alice", "bob", "zed"]


# --- The committed development material: these guard the quick start. ---------------------------------------


def test_the_committed_dev_token_matches_the_dev_user() -> None:
    token_text = dev_material.DEV_TOKEN_FILE.read_text()
    assert token_text.endswith("\n") and token_text.count("\n") == 1
    token = token_text.strip()
    assert len(token) >= 43
    assert hashes(dev_material.DEV_USERS) == {"dev": hash_token(token)}
    assert token not in dev_material.DEV_USERS.read_text()


def test_the_committed_users_file_says_it_is_development_material() -> None:
    first_line = dev_material.DEV_USERS.read_text().splitlines()[0]
    assert first_line.startswith("# Development material")
    header = dev_material.DEV_USERS.read_text().split("[users]")[0].lower()
    assert "public" in header and "own machine only" in header
