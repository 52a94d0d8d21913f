"""--template FILE on the L2D commands: a bad file is a one-line CLI error before any work, and
a model without a recorded template is warned about when a memory is built for it."""
import json

import pytest

from pyl2d.cli import main


@pytest.mark.parametrize("command", [["finetune", "--base", "B", "--output", "O"], ["build-memory", "--model", "M",
                                     "--output", "O"], ["eval", "--model", "M"],
                                     ["recommend", "--model", "M", "--memory", "MEM", "--history", "1"]])
def test_a_bad_template_file_is_a_one_line_error(tmp_path, capsys, command):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"template": "{history} {n:>50000000}"}))
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--data", str(tmp_path), "--template", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and str(bad) in err and "field template" in err and "format spec" in err


def test_a_model_without_a_recorded_template_is_warned_about(tmp_path):
    from pyl2d.l2d.pipeline import prompt_template
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT

    logged = []
    assert prompt_template(tmp_path, log=logged.append) == DEFAULT_PROMPT
    assert len(logged) == 1 and logged[0].startswith("warning:") and "--template" in logged[0]
    good = tmp_path / "t.json"
    good.write_text(json.dumps({"instruction": "Next?", "max_history": 3}))
    logged.clear()
    template = prompt_template(tmp_path, max_history=2, template_file=good, log=logged.append)
    assert template.instruction == "Next?" and template.max_history == 2 and not logged
