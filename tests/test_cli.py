import pytest

from adapterserve.cli import main


def test_help_lists_serve_and_train(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "train" in out


def test_serve_flags(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--store", "--backbone", "--device", "--dtype"):
        assert flag in out


def test_bad_flag_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        main(["serve", "--port", "not-a-number"])
    assert e.value.code == 2
