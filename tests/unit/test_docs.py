"""The README documents every data key exactly as the settings define it."""

from pathlib import Path

from hakube.settings import keys_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_key_table_is_the_generated_one():
    assert keys_markdown() in README, "regenerate the table: python -m hakube.settings"


def test_readme_shows_the_two_commands():
    assert "make lab" in README and "make test" in README


def test_readme_hardening_table_is_the_generated_one():
    from hakube import cis

    assert cis.markdown() in README, "regenerate the table: python -m hakube.cis"
