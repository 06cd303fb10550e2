"""robot-stack demo builds its train and fine-tune configs once, in ``Demo``: a bad ``train.*`` override is still one
line before anything runs, and no output folder is left behind."""

from robot_stack.cli import main


def test_a_bad_train_override_is_one_line_and_makes_no_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", f"out={out}", "train.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robot-stack demo: error: ") and err.count("\n") == 1 and "no_such_key" in err, err
    assert not out.exists()

